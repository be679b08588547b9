// make_model_goldens.mjs - reference next-token distributions and greedy continuations
// from llama.cpp (through node-llama-cpp 3.21.1, prebuilt CPU build) for ponder's tests.
//
// Usage (from the repository root, after building ponder so build/tests/mkmodel exists):
//   npm i -E node-llama-cpp@3.21.1 --prefix /opt/nlc     # once, outside the tree
//   NODE_PATH=/opt/nlc/node_modules node tests/golden/make_model_goldens.mjs
// Writes tests/golden/models/<name>.json. Each file records how the model was made (the
// mkmodel arguments, or the shared model's file name), the input tokens, and for every
// position i >= 1 the reference log-probability of token i and the top-10 alternatives,
// plus a greedy continuation. The KV cache is f32 and flash attention off, so the
// reference matches an exact forward pass to ~1e-6 on f32 models.
import {execFileSync} from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import {createRequire} from "node:module";

const require = createRequire(import.meta.url);
const nlcPath = process.env.NODE_PATH ? path.join(process.env.NODE_PATH, "node-llama-cpp")
                                      : "node-llama-cpp";
const {getLlama} = await import(require.resolve(nlcPath));

const root = process.cwd();
const mkmodel = path.resolve(process.env.PONDER_BUILD || "build", "tests", "mkmodel");
const outDir = path.join(root, "tests", "golden", "models");
const tmp = fs.mkdtempSync("/tmp/ponder-goldens-");
const TOPK = 10;

const llama = await getLlama({gpu: false, build: "never"});

async function reference(modelPath, inputTokens, nGen) {
    const model = await llama.loadModel({modelPath});
    const context = await model.createContext({
        contextSize: 512, batchSize: 512, flashAttention: false,
        experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32",
    });
    const seq = context.getSequence();
    const items = inputTokens.map((t) => [t, {generateNext: {probabilities: true}}]);
    const res = await seq.controlledEvaluate(items);
    const positions = [];
    const dists = res.map((r) => r.next.probabilities);
    for (let i = 1; i < inputTokens.length; i++) {
        const probs = dists[i - 1];
        const top = [...probs.entries()].slice(0, TOPK).map(([id, p]) => [id, Math.log(p)]);
        const p = probs.get(inputTokens[i]);
        positions.push({pos: i, token: inputTokens[i], logprob: Math.log(p), top});
    }
    // Greedy continuation from the whole input.
    const greedy = [];
    let last = dists[dists.length - 1];
    for (let k = 0; k < nGen; k++) {
        const next = last.entries().next().value[0];
        greedy.push(next);
        const r = await seq.controlledEvaluate([[next, {generateNext: {probabilities: true}}]]);
        last = r[0].next.probabilities;
    }
    await context.dispose();
    await model.dispose();
    return {positions, greedy};
}

function write(name, obj) {
    fs.mkdirSync(outDir, {recursive: true});
    fs.writeFileSync(path.join(outDir, name + ".json"), JSON.stringify(obj) + "\n");
    console.log("wrote", name);
}

// Random-weight models: every architecture x tensor type (TYPES=a,b,... writes only those
// types' files and nothing else).
const archs = ["llama", "qwen2", "qwen3"];
const only = process.env.TYPES ? process.env.TYPES.split(",") : null;
const types = only || ["f32", "f16", "bf16", "q8_0", "q4_0", "q5_0", "q4_1", "q5_1", "q4_k",
                       "q5_k", "q6_k"];
for (const arch of archs) {
    for (const type of types) {
        const args = ["--arch", arch, "--type", type, "--seed", "1"];
        const file = path.join(tmp, `${arch}-${type}.gguf`);
        execFileSync(mkmodel, [...args, "--out", file]);
        const model = await llama.loadModel({modelPath: file});
        const nVocab = model.tokens.vocabSize ?? 300;
        await model.dispose();
        // A fixed pseudo-random token sequence (same generator as the C test).
        let s = 12345;
        const tokens = [];
        for (let i = 0; i < 48; i++) {
            s = (s * 48271) % 2147483647;
            tokens.push(s % Math.min(nVocab, 250) + 3);
        }
        const ref = await reference(file, tokens, 16);
        write(`${arch}-${type}`, {model: {mkmodel: args}, kv: "f32", tokens, ...ref});
    }
}

// Llama 3.1-style rotation-frequency divisors (rope_freqs.weight).
if (!only) {
    const args = ["--arch", "llama", "--type", "f32", "--seed", "1", "--rope-freqs", "1"];
    const file = path.join(tmp, "llama-f32-ropefreqs.gguf");
    execFileSync(mkmodel, [...args, "--out", file]);
    let s = 12345;
    const tokens = [];
    for (let i = 0; i < 48; i++) {
        s = (s * 48271) % 2147483647;
        tokens.push(s % 250 + 3);
    }
    const ref = await reference(file, tokens, 16);
    write("llama-f32-ropefreqs", {model: {mkmodel: args}, kv: "f32", tokens, ...ref});
}

// The shared stories260K model: "Once upon a time" and a 200-token greedy continuation.
const models = process.env.PONDER_TEST_MODELS || path.join(root, "..", "shared", "models");
const stories = path.join(models, "stories260K.gguf");
if (!only && fs.existsSync(stories)) {
    const model = await llama.loadModel({modelPath: stories});
    const prompt = "Once upon a time";
    let tokens = [...model.tokenize(prompt, true)];
    if (model.tokens.shouldPrependBosToken) tokens = [model.tokens.bos, ...tokens];
    await model.dispose();
    const ref = await reference(stories, tokens, 200);
    // Score the whole greedy text too, so `ponder score` is checked on 200+ positions.
    const all = [...tokens, ...ref.greedy];
    const scored = await reference(stories, all, 0);
    write("stories260K", {model: {file: "stories260K.gguf"}, kv: "f32", prompt,
                          prompt_tokens: tokens, greedy: ref.greedy, tokens: all,
                          positions: scored.positions});
}
fs.rmSync(tmp, {recursive: true, force: true});
