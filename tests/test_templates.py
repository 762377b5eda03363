"""Chat-template analysis: sandbox escapes flagged with their line, real templates stay clean."""

import subprocess
import sys

import pytest

from airlock.core.context import ScanContext
from airlock.core.findings import Severity
from airlock.core.templates import analyze_template
from airlock.core.tree import TEMPLATE, Node

# Realistic templates, written the way the published models write them.

LLAMA31_TOOLS = """{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
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
{%- if tools_in_user_message and not tools is none %}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
    {%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\\n\\n' -}}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}
{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
            {{- "<|python_tag|>" + tool_call.name + ".call(" }}
            {%- for arg_name, arg_val in tool_call.arguments | items %}
                {{- arg_name + '="' + arg_val + '"' }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- endif %}
            {%- endfor %}
            {{- ")" }}
        {%- else  %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
            {{- '{"name": "' + tool_call.name + '", ' }}
            {{- '"parameters": ' }}
            {{- tool_call.arguments | tojson }}
            {{- "}" }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""

QWEN_TOOLS = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\\n\\n' }}
    {%- endif %}
    {{- "# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and message.content is string and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
        {% break %}
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
        {%- elif '</think>' in content %}
            {%- set reasoning_content = content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}
            {%- set content = content.split('</think>')[-1].lstrip('\\n') %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index %}
            {{- '<|im_start|>' + message.role + '\\n<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n') }}
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
{%- endif %}
"""

DEEPSEEK = """{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}\
{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='', is_first_sp=true) %}\
{%- for message in messages %}{%- if message['role'] == 'system' %}{%- if ns.is_first_sp %}\
{% set ns.system_prompt = ns.system_prompt + message['content'] %}{% set ns.is_first_sp = false %}\
{%- else %}{% set ns.system_prompt = ns.system_prompt + '\\n\\n' + message['content'] %}{%- endif %}{%- endif %}{%- endfor %}\
{{ bos_token }}{{ ns.system_prompt }}\
{%- for message in messages %}{%- if message['role'] == 'user' %}{%- set ns.is_tool = false -%}\
{{'<｜User｜>' + message['content']}}{%- endif %}\
{%- if message['role'] == 'assistant' and 'tool_calls' in message %}{%- set ns.is_tool = false -%}\
{%- for tool in message['tool_calls'] %}{%- if not ns.is_first %}{%- if message['content'] is none %}\
{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + '```json' + '\\n' + tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}\
{%- endif %}{%- set ns.is_first = true -%}{%- else %}\
{{'\\n' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + '```json' + '\\n' + tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}\
{%- endif %}{%- endfor %}{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}\
{%- if message['role'] == 'assistant' and 'tool_calls' not in message %}{%- if ns.is_tool %}\
{{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}{%- set ns.is_tool = false -%}\
{%- else %}{% set content = message['content'] %}{% if '</think>' in content %}\
{% set content = content.split('</think>')[-1] %}{% endif %}{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}\
{%- endif %}{%- endif %}\
{%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}{%- if ns.is_output_first %}\
{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}\
{%- set ns.is_output_first = false %}{%- else %}\
{{'<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- endif %}{%- endif %}\
{%- endfor -%}{% if ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}{% endif %}\
{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜><think>\\n'}}{% endif %}"""

MISTRAL_TOOLS = """{%- if messages[0]["role"] == "system" %}
    {%- set system_message = messages[0]["content"] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}
{%- set user_messages = loop_messages | selectattr("role", "equalto", "user") | list %}
{%- for message in loop_messages | rejectattr("role", "equalto", "tool") | rejectattr("role", "equalto", "tool_results") | selectattr("tool_calls", "undefined") %}
    {%- if (message["role"] == "user") != (loop.index0 % 2 == 0) %}
        {{- raise_exception("After the optional system message, conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif %}
{%- endfor %}
{{- bos_token }}
{%- for message in loop_messages %}
    {%- if message["role"] == "user" %}
        {%- if tools is not none and (message == user_messages[-1]) %}
            {{- "[AVAILABLE_TOOLS] [" }}
            {%- for tool in tools %}
                {%- set tool = tool.function %}
                {{- '{"type": "function", "function": {' }}
                {%- for key, val in tool.items() if key != "return" %}
                    {%- if val is string %}
                        {{- '"' + key + '": "' + val + '"' }}
                    {%- else %}
                        {{- '"' + key + '": ' + val|tojson }}
                    {%- endif %}
                    {%- if not loop.last %}
                        {{- ", " }}
                    {%- endif %}
                {%- endfor %}
                {{- "}}" }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- else %}
                    {{- "]" }}
                {%- endif %}
            {%- endfor %}
            {{- "[/AVAILABLE_TOOLS]" }}
        {%- endif %}
        {%- if loop.last and system_message is defined %}
            {{- "[INST] " + system_message + "\\n\\n" + message["content"] + "[/INST]" }}
        {%- else %}
            {{- "[INST] " + message["content"] + "[/INST]" }}
        {%- endif %}
    {%- elif message.tool_calls is defined and message.tool_calls is not none %}
        {{- "[TOOL_CALLS] [" }}
        {%- for tool_call in message.tool_calls %}
            {%- set out = tool_call.function|tojson %}
            {{- out[:-1] }}
            {%- if not tool_call.id is defined or tool_call.id|length != 9 %}
                {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
            {%- endif %}
            {{- ', "id": "' + tool_call.id + '"}' }}
            {%- if not loop.last %}
                {{- ", " }}
            {%- else %}
                {{- "]" + eos_token }}
            {%- endif %}
        {%- endfor %}
    {%- elif message["role"] == "assistant" %}
        {{- " " + message["content"]|trim + eos_token}}
    {%- elif message["role"] == "tool_results" or message["role"] == "tool" %}
        {%- if message.content is defined and message.content.content is defined %}
            {%- set content = message.content.content %}
        {%- else %}
            {%- set content = message.content %}
        {%- endif %}
        {{- '[TOOL_RESULTS] {"content": ' + content|string + ", " }}
        {{- '"call_id": "' + message.tool_call_id + '"}[/TOOL_RESULTS]' }}
    {%- else %}
        {{- raise_exception("Only user and assistant roles are supported, with the exception of an initial optional system message!") }}
    {%- endif %}
{%- endfor %}
"""

GENERATION = """{%- for message in messages %}
{%- if message.role == 'assistant' %}<|assistant|>{% generation %}{{ message.content }}<|end|>{% endgeneration %}
{%- else %}<|{{ message.role }}|>{{ message.content }}<|end|>{% endif %}
{%- if loop.last %}{% continue %}{% endif %}
{%- endfor %}
{%- set sep = joiner(", ") %}{% for t in tools %}{{ sep() }}{{ t.name }}{% endfor %}
{%- set row = cycler("odd", "even") %}{{ row.next() }}{{ lipsum(1) if false }}
{%- set system = messages[0] %}{{ system.content }}"""

BENIGN = {"llama31_tools": LLAMA31_TOOLS, "qwen_tools": QWEN_TOOLS, "deepseek": DEEPSEEK,
          "mistral_tools": MISTRAL_TOOLS, "generation_and_globals": GENERATION}

# (template, line of the finding, expected rule, text the message must contain)
HOSTILE = {
    "cycler_globals_os": ("{{ cycler.__init__.__globals__.os.popen('id').read() }}", 1, "TPL001",
                          "cycler.__init__.__globals__.os.popen('id').read()"),
    "str_mro_subclasses": ("{{ ''.__class__.__mro__[1].__subclasses__() }}", 1, "TPL001", "__subclasses__"),
    "joiner_globals": ("hi\n{{ joiner.__init__.__globals__ }}", 2, "TPL001", "joiner.__init__.__globals__"),
    "namespace_item": ("{% set x = 1 %}\n\n{{ namespace.__init__.__globals__['os'] }}", 3, "TPL001",
                       "namespace.__init__.__globals__['os']"),
    "lipsum_globals": ("{{ lipsum.__globals__['os'].popen('id') }}", 1, "TPL001", "lipsum.__globals__"),
    "lipsum_plain_attribute": ("{{ lipsum.func }}", 1, "TPL001", "Jinja's global 'lipsum'"),
    "template_reference": ("{{ self._TemplateReference__context.cycler }}", 1, "TPL001", "_TemplateReference"),
    "attr_filter_dunder": ("{{ messages|attr('__class__') }}", 1, "TPL001", "__class__"),
    "map_attribute_dunder": ("{{ messages|map(attribute='__class__')|list }}", 1, "TPL001", "__class__"),
    "format_string_fields": ("{{ '{0.__class__.__init__}'.format(cycler) }}", 1, "TPL001", "format"),
    "bare_os_name": ("{% for m in messages %}\n{{ os.system('id') }}{% endfor %}", 2, "TPL001", "os.system('id')"),
    "builtins_item": ("{{ x['__builtins__']['eval']('1') }}", 1, "TPL001", "__builtins__"),
    "computed_attr": ("{{ messages|attr('__cla' ~ 'ss__') }}", 1, "TPL002", "computed"),
    "include_other": ("{% include 'other.j2' %}", 1, "TPL003", "include"),
}


def analyze(text):
    ctx = ScanContext()
    node = Node(TEMPLATE, "tokenizer.chat_template", offset=100)
    analyze_template(text, ctx, node)
    return ctx, node


@pytest.mark.parametrize("name", sorted(BENIGN))
def test_real_templates_stay_clean(name):
    ctx, node = analyze(BENIGN[name])
    # Info findings name the known family, or the drift from it (these copies differ from the
    # catalogued ones in whitespace and order); nothing may rise above info.
    risky = [f for f in ctx.findings if f.severity > Severity.INFO]
    assert risky == [], [f.message for f in risky]
    assert node.severity <= Severity.INFO
    assert node.attrs["text"] == BENIGN[name]


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_escapes_are_reported_with_expression_and_line(name):
    text, line, rule, needle = HOSTILE[name]
    ctx, node = analyze(text)
    assert ctx.findings, "no finding"
    rules = {f.rule for f in ctx.findings}
    assert rule in rules
    hit = next(f for f in ctx.findings if f.rule == rule)
    assert f"line {line}:" in hit.message
    assert needle in hit.message
    assert hit.offset == 100  # the template's own offset in the file
    assert line in node.attrs["findings_lines"]
    assert node.severity >= Severity.HIGH


def test_one_chain_is_one_finding_with_every_reason():
    ctx, _ = analyze("{{ cycler.__init__.__globals__.os.popen('id').read() }}")
    assert len(ctx.findings) == 1
    message = ctx.findings[0].message
    assert ctx.findings[0].severity == Severity.CRITICAL
    for reason in ("'__init__'", "'__globals__'", "'os'", "'popen'"):
        assert reason in message


def test_unparseable_template_is_medium_not_analysed():
    ctx, node = analyze("{% for m in messages %}\n{{ m.content }\n")
    assert [f.rule for f in ctx.findings] == ["TPL004"]
    assert ctx.findings[0].severity == Severity.MEDIUM
    assert "not analysed" in ctx.findings[0].message
    assert node.attrs["findings_lines"]


def test_deeply_nested_template_is_a_finding_not_a_crash():
    text = "{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}"
    _, node = analyze(text)
    assert node.severity in (Severity.NONE, Severity.MEDIUM)


def test_names_the_template_defines_itself_are_data():
    ctx, _ = analyze("{% set os = 'linux' %}{% macro system(x) %}{{ x }}{% endmacro %}{{ os }}{{ system(1) }}")
    assert ctx.findings == []


def test_strings_that_mention_escapes_are_data():
    ctx, _ = analyze("Never write {{ '__class__' }} or cycler.__init__ in text: {{ 'os.system' }}")
    assert ctx.findings == []


def test_never_compiles_or_renders(monkeypatch):
    import jinja2.environment

    def refuse(*args, **kwargs):
        raise AssertionError("a template was compiled")

    monkeypatch.setattr(jinja2.environment.Environment, "compile", refuse)
    monkeypatch.setattr(jinja2.environment.Environment, "from_string", refuse)
    ctx, _ = analyze(HOSTILE["cycler_globals_os"][0])
    assert ctx.findings


def test_jinja2_is_imported_only_when_a_template_is_analysed():
    code = "import sys, airlock.core.templates, airlock.core.formats.safetensors; print('jinja2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
