// llama_self_consistency.mjs - how far llama.cpp's own CPU paths disagree with each other
// on ponder's random-weight models: the same 48 tokens evaluated as one batch (batch size
// 512, 4 threads) and one token at a time (batch size 1, 1 thread), both with an f32 KV
// cache and flash attention off, as the goldens are made. Prints, per model, the largest
// |logprob difference| over the top-10 entries and the positions over the issue's
// tolerance (1e-3 for f32/f16/bf16, 2e-2 for quantised types). docs/accuracy.md quotes it.
//
// Usage (from the repository root, after building build/tests/mkmodel):
//   NODE_PATH=/opt/nlc/node_modules node tests/golden/llama_self_consistency.mjs
import {execFileSync} from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import {createRequire} from "node:module";

const require = createRequire(import.meta.url);
const nlcPath = process.env.NODE_PATH ? path.join(process.env.NODE_PATH, "node-llama-cpp")
                                      : "node-llama-cpp";
const {getLlama} = await import(require.resolve(nlcPath));
const llama = await getLlama({gpu: false, build: "never"});
const mkmodel = path.resolve(process.env.PONDER_BUILD || "build", "tests", "mkmodel");
const tmp = fs.mkdtempSync("/tmp/ponder-self-");

async function dists(file, tokens, batchSize, threads, oneByOne) {
    const model = await llama.loadModel({modelPath: file});
    const ctx = await model.createContext({
        contextSize: 512, batchSize, threads, flashAttention: false,
        experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32",
    });
    const seq = ctx.getSequence();
    let out = [];
    if (oneByOne) {
        for (const t of tokens) {
            const r = await seq.controlledEvaluate([[t, {generateNext: {probabilities: true}}]]);
            out.push(r[0].next.probabilities);
        }
    } else {
        const r = await seq.controlledEvaluate(
            tokens.map((t) => [t, {generateNext: {probabilities: true}}]));
        out = r.map((x) => x.next.probabilities);
    }
    await ctx.dispose();
    await model.dispose();
    return out;
}

for (const arch of ["llama", "qwen2", "qwen3"]) {
    for (const type of ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_k", "q5_k", "q6_k"]) {
        const file = path.join(tmp, `${arch}-${type}.gguf`);
        execFileSync(mkmodel, ["--arch", arch, "--type", type, "--seed", "1", "--out", file]);
        let s = 12345;
        const tokens = [];
        for (let i = 0; i < 48; i++) {
            s = (s * 48271) % 2147483647;
            tokens.push(s % 250 + 3);
        }
        const a = await dists(file, tokens, 512, 4, false);
        const b = await dists(file, tokens, 1, 1, true);
        const tol = type === "f32" || type === "f16" || type === "bf16" ? 1e-3 : 2e-2;
        let mx = 0, over = 0;
        for (let i = 0; i < a.length - 1; i++) {
            let pm = 0;
            for (const [id, p] of [...a[i].entries()].slice(0, 10)) {
                const q = b[i].get(id);
                if (!q || p <= 0 || Math.log(p) < -80) continue;
                pm = Math.max(pm, Math.abs(Math.log(p) - Math.log(q)));
            }
            mx = Math.max(mx, pm);
            if (pm > tol) over++;
        }
        console.log(`${arch}-${type}: max ${mx.toExponential(2)}, positions over ${tol}: ${over}/47`);
    }
}
fs.rmSync(tmp, {recursive: true, force: true});
