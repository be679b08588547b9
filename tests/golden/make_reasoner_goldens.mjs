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
    // llama.cpp against itself: every position again, one token at a time (batch size 1),
    // against the batch above. With q8_0 activations a rounding flip moves a logprob by
    // more than the base tolerance in llama.cpp's own two paths; the file's tolerance is
    // the larger of the two, so ponder is held to llama.cpp's own spread and no looser.
    const ctx3 = await model.createContext({
        contextSize: 640, batchSize: 1, flashAttention: false, threads: 1,
        experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32",
    });
    const seq3 = ctx3.getSequence();
    let selfSpread = 0;
    for (let i = 0; i + 1 < tokens.length; i++) {
        const r = await seq3.controlledEvaluate([[tokens[i], {generateNext: {probabilities: true}}]]);
        const lp = Math.log(r[0].next.probabilities.get(tokens[i + 1]));
        selfSpread = Math.max(selfSpread, Math.abs(lp - positions[i].logprob));
    }
    await ctx3.dispose();
    const text = model.detokenize(greedy, true);
    await model.dispose();
    console.log(file, "greedy:", JSON.stringify(text));
    console.log(file, "llama.cpp one token at a time vs batch: max |d logprob|", selfSpread);
    return {file, kv: "f32", tolerance: Math.max(tolerance.all, selfSpread),
            answer_tolerance: Math.max(tolerance.answer, selfSpread),
            answer_from: promptTokens.length, llama_self_spread: selfSpread, prompt,
            prompt_tokens: promptTokens, greedy, text, tokens, positions};
}

// Tolerances: every position, and the positions of the greedy answer. f32: 1e-4 for all.
// q8_0: both programs round each matrix input to q8_0, from f32 values summed in another
// order, so one activation on a rounding midpoint can round the other way and move the
// logits of a position by a few hundredths; that shows on unlikely prompt tokens (0.021
// at a prompt position of logprob -9.6 for the shipped file), while the answer the model
// is sure of agrees to 3e-4: 5e-2 for all positions, 1e-3 for the answer's.
const out = {models: [await golden("reasoner.gguf", {all: 1e-4, answer: 1e-4}),
                      await golden("reasoner-q8_0.gguf", {all: 5e-2, answer: 1e-3})]};
const dir = path.join(root, "tests", "golden", "reasoner");
fs.mkdirSync(dir, {recursive: true});
fs.writeFileSync(path.join(dir, "reasoner.json"), JSON.stringify(out) + "\n");
console.log("wrote tests/golden/reasoner/reasoner.json");
