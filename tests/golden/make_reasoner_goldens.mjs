// make_reasoner_goldens.mjs - llama.cpp's view of the shipped reasoner (samples/models):
// how it tokenizes a chat prompt, its greedy answer, and the log-probability of every
// token of prompt + answer, for the f32 and the q8_0 file. tests/test_reasoner.c checks
// ponder against these (docs/reasoner.md).
//
// Usage (from the repository root):
//   npm i -E node-llama-cpp@3.21.1 --prefix /opt/nlc     # once, outside the tree
//   NODE_PATH=/opt/nlc/node_modules node tests/golden/make_reasoner_goldens.mjs
// Writes tests/golden/reasoner/reasoner.json. The KV cache is f32 and flash attention off.
import fs from "node:fs";
import path from "node:path";
import {createRequire} from "node:module";

const require = createRequire(import.meta.url);
const nlcPath = process.env.NODE_PATH ? path.join(process.env.NODE_PATH, "node-llama-cpp")
                                      : "node-llama-cpp";
const {getLlama} = await import(require.resolve(nlcPath));

const root = process.cwd();
const llama = await getLlama({gpu: false, build: "never"});
// The prompt ponder renders for this question with the Qwen3 template, thinking on.
const prompt = "<|im_start|>user\nWhat is 47 * 36?<|im_end|>\n<|im_start|>assistant\n";

async function golden(file, tolerance) {
    const modelPath = path.join(root, "samples", "models", file);
    const model = await llama.loadModel({modelPath});
    const promptTokens = [...model.tokenize(prompt, true)];
    const eos = model.tokens.eos;
    const context = await model.createContext({
        contextSize: 640, batchSize: 640, flashAttention: false, threads: 1,
        experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32",
    });
    const seq = context.getSequence();
    // greedy answer, to the end of the turn
    let res = await seq.controlledEvaluate(
        promptTokens.map((t) => [t, {generateNext: {probabilities: true}}]));
    let probs = res[res.length - 1].next.probabilities;
    const greedy = [];
    while (promptTokens.length + greedy.length < 639) {
        const next = probs.entries().next().value[0];
        greedy.push(next);
        if (next === eos) {
            break;
        }
        res = await seq.controlledEvaluate([[next, {generateNext: {probabilities: true}}]]);
        probs = res[0].next.probabilities;
    }
    await context.dispose();
    // every position of prompt + answer, from a fresh context
    const tokens = [...promptTokens, ...greedy];
    const ctx2 = await model.createContext({
        contextSize: 640, batchSize: 640, flashAttention: false, threads: 1,
        experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32",
    });
    const scored = await ctx2.getSequence().controlledEvaluate(
        tokens.map((t) => [t, {generateNext: {probabilities: true}}]));
    const positions = [];
    for (let i = 1; i < tokens.length; i++) {
        positions.push({pos: i, token: tokens[i],
                        logprob: Math.log(scored[i - 1].next.probabilities.get(tokens[i]))});
    }
    await ctx2.dispose();
    const text = model.detokenize(greedy, true);
    await model.dispose();
    console.log(file, "greedy:", JSON.stringify(text));
    return {file, kv: "f32", tolerance, prompt, prompt_tokens: promptTokens, greedy, text,
            tokens, positions};
}

const out = {models: [await golden("reasoner.gguf", 1e-4),
                      await golden("reasoner-q8_0.gguf", 1e-2)]};
const dir = path.join(root, "tests", "golden", "reasoner");
fs.mkdirSync(dir, {recursive: true});
fs.writeFileSync(path.join(dir, "reasoner.json"), JSON.stringify(out) + "\n");
console.log("wrote tests/golden/reasoner/reasoner.json");
