// make_tokenizer_goldens.mjs - token ids from llama.cpp (through node-llama-cpp) for the
// tokenizer corpus below; tests/test_tokenizer.c checks ponder's tokenizer against them.
//
// Regenerate (from the repository root, with node-llama-cpp 3.21.1 installed in /opt/nlc:
// `cd /opt/nlc && npm i -E node-llama-cpp@3.21.1`, or set NLC_DIR to another install):
//
//   ninja -C build mkqwenvocab
//   Q=../shared/tokenizers/qwen
//   for pre in qwen2 llama-bpe gpt-2 default; do
//     build/tests/mkqwenvocab $Q $pre /tmp/qwen-$pre.gguf
//     node tests/golden/make_tokenizer_goldens.mjs /tmp/qwen-$pre.gguf \
//       tests/golden/tokenizer/qwen-$pre.json "Qwen vocab (shared/tokenizers/qwen), pre $pre"
//   done
//   node tests/golden/make_tokenizer_goldens.mjs ../shared/models/stories260K.gguf \
//     tests/golden/tokenizer/stories260k.json "stories260K.gguf (SPM, 512 tokens)"
//
// Output: {"source", "generator", "add_bos", "bos", "cases": [{"text", "tokens",
// "tokens_plain"}]}. `tokens` is llama_tokenize(text, add_special = false,
// parse_special = true); `tokens_plain` the same with parse_special = false. When add_bos
// is true, ponder's encode with add_bos must give [bos, ...tokens].
import { createRequire } from "node:module";
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";

const [gguf, out, source] = process.argv.slice(2);
if (!gguf || !out) {
    console.error("usage: node make_tokenizer_goldens.mjs MODEL.gguf OUT.json [SOURCE]");
    process.exit(2);
}
const nlcDir = process.env.NLC_DIR ?? "/opt/nlc/";
const require = createRequire(nlcDir.endsWith("/") ? nlcDir : nlcDir + "/");
const nlcMain = require.resolve("node-llama-cpp"); // .../node-llama-cpp/dist/index.js
const { getLlama } = await import(pathToFileURL(nlcMain).href);
const nlcVersion = JSON.parse(readFileSync(join(dirname(nlcMain), "..", "package.json"))).version;

// The corpus: prose, code, numbers, scripts, emoji, white space of every kind,
// contractions, special tokens inline (Qwen and SPM spellings), odd code points.
const corpus = [
    "",
    " ",
    "a",
    "Hello world",
    " Hello world",
    "Once upon a time, there was a little girl named Lily. She loved to play outside.",
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure they'll say we've done it; she'd agree, don't you think? It's John's.",
    "IT'S LOUD, WE'RE HERE, THEY'LL SEE, I'D GO, YOU'VE WON, I'M IN, DON'T.",
    "'s 't 're 've 'm 'll 'd 'x ' '",
    "rock 'n' roll and the '90s",
    "12345678",
    "3.14159 and 2,718,281 and 1e-10 and -42 and +7",
    "0123456789 9876543210 000 1 12 123 1234 12345",
    "int main(void) {\n    printf(\"hi %d\\n\", 42);\n    return 0;\n}\n",
    "def f(x):\n\tif x > 0:\n\t\treturn x ** 2\n\treturn -x  # comment\n",
    "for (size_t i = 0; i < n; i++) { a[i] += b[i] * c; }",
    "https://example.com/path/to?q=1&r=two#frag",
    "user@example.org, <b>bold</b>, [link](http://x.y), {\"k\": [1, 2.5, null]}",
    "你好，世界！这是一个测试。",
    "日本語のテキストです。カタカナとひらがな。",
    "한국어 문장입니다.",
    "Привет, мир! Ёжик.",
    "مرحبا بالعالم",
    "Γειά σου Κόσμε",
    "naïve café résumé Ångström façade",
    "e\u0301 a\u0308 combining marks",
    "👋🌍🎉 emoji 👨‍👩‍👧‍👦 family 🇺🇸 flag",
    "∑∫√∞ ≤ ≥ ≠ ±  x² + y³ = z⁴",
    "a    b",
    "trailing spaces   ",
    "   leading spaces",
    "\t\tindented\twith\ttabs",
    "\n",
    "\n\n\n",
    "line one\nline two\r\nline three\rend",
    " \n \n  \n",
    "a \n b\t\n\tc",
    "mixed\u00a0non\u2003breaking\u3000spaces\u2028and\u2029separators",
    "zero\u200bwidth\ufeffBOM",
    "ctrl\u0001\u0002chars\u0007bell\u007f",
    "!!!!!! ...... ?!?! ---- ____ ****",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "The answer is 42.\n\nWait, let me double-check: 6 * 7 = 42. Yes.",
    "<think>\nLet me think step by step.\n</think>\n\nThe answer is 4.",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n" +
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|><|im_end|><|endoftext|>",
    "text<|endoftext|>more text",
    "<tool_call>{\"name\": \"f\"}</tool_call>",
    "<|im_start|><think></think>",
    "< think > <|im_start |> <|im_start|",
    "<s>Once upon a time</s>",
    "<unk> and <s> and </s>",
    "a<s>b</s>c",
    "Lily's dog was very happy. \"Let's go!\" said Tom.",
    "١٢٣ ٤٥٦ ①②③ Ⅻ ½",
    "ÀÉÎÕÜ àéîõü ßẞ ǅǈ",
    "x".repeat(300),
    "the ".repeat(50),
];

// Plus 200 random strings drawn from pieces that stress the splitters (xorshift, fixed
// seed, so the file is reproducible).
const pool = [
    "a", "b", "e", "Z", "Q", "the", " the", "0", "1", "9", "12", "345", " ", "  ", "   ", "\t",
    "\n", "\n\n", "\r", "\r\n", " \n", "'", "'s", "'S", "'re", "'LL", "'d", "'t", "'ve", "'m",
    "!", ".", ",", "?", "-", "_", "(", ")", "{", "}", "<", ">", "/", "\\", "\"", "#", "$", "%",
    "^", "~", "|", "+", "=", "`", "é", "ß", "ñ", "Ö", "你", "好", "世", "界", "。", "，", "日",
    "本", "カ", "ひ", "한", "Я", "ж", "α", "Ω", "ا", "ب", "٣", "①", "½", "Ⅻ", "²", "\u0301",
    "\u0308", "\u00a0", "\u2003", "\u3000", "\u200b", "\ufeff", "\u0001", "\u007f",
    "\u0085", "🎉", "👋", "🌍", "👨‍👩‍👧", "🇺🇸", "∑", "≤", "€", "£", "¥", "©", "®", "™",
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<tool_call>", "<s>",
    "</s>", "<unk>", "<|fim_pad|>", "\u2581", "Ġ", "ł", "Ċ",
];
let seed = 0x2545F4914F6CDD1Dn;
const rnd = () => {
    const m = 0xFFFFFFFFFFFFFFFFn;
    seed ^= (seed << 13n) & m;
    seed ^= seed >> 7n;
    seed ^= (seed << 17n) & m;
    return Number(seed & 0xFFFFFFFn);
};
for (let i = 0; i < 200; i++) {
    let s = "";
    for (let k = rnd() % 25; k > 0; k--) {
        s += pool[rnd() % pool.length];
    }
    corpus.push(s);
}

const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
const model = await llama.loadModel({ modelPath: gguf, vocabOnly: true });
const cases = corpus.map((text) => ({
    text,
    tokens: model.tokenize(text, true),
    tokens_plain: model.tokenize(text, false),
}));
const doc = {
    source: source ?? gguf,
    generator: `node-llama-cpp ${nlcVersion} (llama.cpp), tests/golden/make_tokenizer_goldens.mjs`,
    add_bos: model.tokens.shouldPrependBosToken,
    bos: model.tokens.bos ?? null,
    cases,
};
// One case per line keeps the file small and diffs readable.
const head = JSON.stringify({ ...doc, cases: [] }, null, 1).replace(/\[\]\n}$/, "[\n");
const body = cases.map((c) => " " + JSON.stringify(c)).join(",\n");
writeFileSync(out, head + body + "\n ]\n}\n");
console.log(`${out}: ${cases.length} cases`);
await model.dispose();
await llama.dispose();
