// make_chat_goldens.mjs - renders reference chat templates with a Jinja engine and writes
// chat_goldens.json, which tests/test_chat.c compares pd_chat_render against.
//
// Usage: node tests/golden/chat/make_chat_goldens.mjs [JINJA_MODULE] > chat_goldens.json
// JINJA_MODULE defaults to /opt/nlc/node_modules/@huggingface/jinja/dist/index.js.
//
// The template texts below are the chat templates published with the models named (as
// stored in their GGUF `tokenizer.chat_template`), kept here as test data. BOS is rendered
// as "" because ponder's prompts never include it (the tokenizer adds it).
import { readFileSync, writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const jinjaPath = process.argv[2] ?? "/opt/nlc/node_modules/@huggingface/jinja/dist/index.js";

// @huggingface/jinja (0.5.x) ignores the argument of str.strip/lstrip/rstrip and trims all
// whitespace, while the reference (Python) strips only the characters given: the Qwen3
// template's lstrip('\n') must keep leading spaces. Patch those three methods to Python
// semantics in a temporary copy of the module before importing it.
function patchStrip(src) {
    const py = `function __pyStrip(s, args, left, right) {
        const chars = args && args.length > 0 && args[0] && typeof args[0].value === "string"
            ? args[0].value : null;
        const isStrip = (c) => (chars === null ? /\\s/.test(c) : chars.includes(c));
        let a = 0, b = s.length;
        if (left) { while (a < b && isStrip(s[a])) a++; }
        if (right) { while (b > a && isStrip(s[b - 1])) b--; }
        return s.slice(a, b);
    }
`;
    const reps = [
        ["trim()", "true, true"], ["trimEnd()", "false, true"], ["trimStart()", "true, false"],
    ];
    for (const [call, lr] of reps) {
        const from = `new FunctionValue(() => {\n          return new StringValue(this.value.${call});`;
        const to = `new FunctionValue((args) => {\n          return new StringValue(__pyStrip(this.value, args, ${lr}));`;
        if (!src.includes(from)) {
            throw new Error(`cannot patch ${call} in ${jinjaPath}`);
        }
        src = src.replace(from, to);
    }
    return py + src;
}
const patchedPath = join(mkdtempSync(join(tmpdir(), "chatgold-")), "jinja.mjs");
writeFileSync(patchedPath, patchStrip(readFileSync(jinjaPath, "utf8")));
const { Template } = await import(patchedPath);
{
    const probe = new Template("{{ '  a\\n'.lstrip('\\n') }}|{{ '\\n a \\n'.strip('\\n') }}|{{ ' b '.strip() }}");
    const got = probe.render({});
    if (got !== "  a\n| a |b") {
        throw new Error("strip patch did not take: " + JSON.stringify(got));
    }
}

const QWEN25 = `{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
`;

const QWEN2 = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

const QWEN3 = `{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\\n\\n' }}
    {%- endif %}
    {{- "# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and message.content is string and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.content is string %}
        {%- set content = message.content %}
    {%- else %}
        {%- set content = '' %}
    {%- endif %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is string %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in content %}
                {%- set reasoning_content = content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}
                {%- set content = content.split('</think>')[-1].lstrip('\\n') %}
            {%- endif %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index %}
            {%- if loop.last or (not loop.last and reasoning_content) %}
                {{- '<|im_start|>' + message.role + '\\n<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n') }}
            {%- else %}
                {{- '<|im_start|>' + message.role + '\\n' + content }}
            {%- endif %}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\\n' + content }}
        {%- endif %}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and content) or (not loop.first) %}
                    {{- '\\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\\n\\n</think>\\n\\n' }}
    {%- endif %}
{%- endif %}`;

const R1_BODY = "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='') %}{%- for message in messages %}{%- if message['role'] == 'system' %}{% set ns.system_prompt = message['content'] %}{%- endif %}{%- endfor %}{{bos_token}}{{ns.system_prompt}}{%- for message in messages %}{%- if message['role'] == 'user' %}{%- set ns.is_tool = false -%}{{'<｜User｜>' + message['content']}}{%- endif %}{%- if message['role'] == 'assistant' and message['content'] is none %}{%- set ns.is_tool = false -%}{%- for tool in message['tool_calls']%}{%- if not ns.is_first %}{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + '```json' + '\\n' + tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}{%- set ns.is_first = true -%}{%- else %}{{'\\n' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + '```json' + '\\n' + tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}{%- endfor %}{%- endif %}{%- if message['role'] == 'assistant' and message['content'] is not none %}{%- if ns.is_tool %}{{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}{%- set ns.is_tool = false -%}{%- else %}{% set content = message['content'] %}{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %}{%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}{%- if ns.is_output_first %}{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- set ns.is_output_first = false %}{%- else %}{{'\\n<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- endif %}{%- endif %}{%- endfor -%}{% if ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}{% endif %}";
const R1_NEW = R1_BODY + "{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜><think>\\n'}}{% endif %}";
const R1_OLD = R1_BODY + "{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜>'}}{% endif %}";

const LLAMA3 = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

const LLAMA31 = `{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message + builtin tools #}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\\n\\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{{- system_message }}
{{- "<|eot_id|>" }}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
`;

const templates = {
    "qwen2.5-instruct": {arch: "qwen2", text: QWEN25,
        expect: {family: "chatml", system_default: "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.", gen_opens_think: false, system_join: false, llama_date_header: false}},
    "qwen2-instruct": {arch: "qwen2", text: QWEN2,
        expect: {family: "chatml", system_default: "You are a helpful assistant.", gen_opens_think: false, system_join: false, llama_date_header: false}},
    "qwen3": {arch: "qwen3", text: QWEN3,
        expect: {family: "qwen3", system_default: null, gen_opens_think: false, system_join: false, llama_date_header: false}},
    "r1-distill-new": {arch: "qwen2", text: R1_NEW,
        expect: {family: "deepseek-r1", system_default: null, gen_opens_think: true, system_join: false, llama_date_header: false}},
    "r1-distill-old": {arch: "llama", text: R1_OLD,
        expect: {family: "deepseek-r1", system_default: null, gen_opens_think: false, system_join: false, llama_date_header: false}},
    "llama3": {arch: "llama", text: LLAMA3,
        expect: {family: "llama3", system_default: null, gen_opens_think: false, system_join: false, llama_date_header: false}},
    "llama3.1": {arch: "llama", text: LLAMA31,
        expect: {family: "llama3", system_default: null, gen_opens_think: false, system_join: false, llama_date_header: true}},
};

const U = (content) => ({role: "user", content});
const A = (content) => ({role: "assistant", content});
const S = (content) => ({role: "system", content});
const conversations = {
    "single": [U("What is 2+3?")],
    "system": [S("You are a careful mathematician."), U("What is 2+3?")],
    "multi-turn-think": [U("Hi"), A("<think>\nThe user greets me.\n</think>\n\nHello! How can I help?"),
                         U("Solve 1+1.")],
    "ends-with-assistant": [U("Solve 1+1."), A("<think>\n1 plus 1 is 2.\n</think>\n\nThe answer is 2.")],
    "ends-with-plain-assistant": [U("Hi"), A("Hello")],
    "two-systems": [S("First rule."), U("u1"), S("Second rule."), U("u2")],
    "assistants-after-query": [U("q"), A("plain answer"), A("<think>r</think>x"), A("tail")],
    "tool-response-user": [U("q"), A("<think>a</think>b"), U("<tool_response>\n42\n</tool_response>")],
    "odd-think": [U("go"), A("pre<think>\n\nfirst\n\n</think>\n\nmid</think>\n\nend\n"), U("again")],
    "odd-think-last": [U("go"), A("x<think>\n</think>y</think>\nz")],
    "whitespace": [S("  sys  \n"), U("\n  padded text \t\n"), A("  answer  ")],
    "unicode": [U("Grüße — 你好 ∑ 🙂"), A("<think>ü</think>é")],
    "no-user": [S("sys"), A("<think>r</think>\n\nx")],
};

const cases = [];
for (const [tname, t] of Object.entries(templates)) {
    const tpl = new Template(t.text);
    const thinks = t.expect.family === "qwen3" ? ["default", "on", "off"] : ["default"];
    for (const [cname, messages] of Object.entries(conversations)) {
        for (const add of [true, false]) {
            for (const think of thinks) {
                if (!add && think !== "default") {
                    continue;
                }
                const vars = {messages, add_generation_prompt: add, bos_token: "", eos_token: ""};
                if (think === "on") vars.enable_thinking = true;
                if (think === "off") vars.enable_thinking = false;
                cases.push({template: tname, conversation: cname, add_generation_prompt: add,
                            think, text: tpl.render(vars)});
            }
        }
    }
}
const out = {
    generator: "tests/golden/chat/make_chat_goldens.mjs with @huggingface/jinja",
    templates, conversations, cases,
};
process.stdout.write(JSON.stringify(out, null, 1) + "\n");
