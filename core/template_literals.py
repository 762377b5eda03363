"""What a literal a chat template emits is: structure (special tokens, role markers, whitespace,
JSON keys) or natural-language text, and whether it carries a payload.

Real templates emit mostly structure: `<|im_start|>`, `[INST]`, `<｜User｜>`, `user`, `\\n\\n`,
`{"name": "`. Natural language is rare (default system prompts, tool-use instructions) and is
exactly what a poisoned template adds, so anything that is not recognisably structure counts as
text. URLs, e-mail addresses, encoded blobs, HTML comments and instructions to conceal have no
business in a chat template's own output at all.
"""

from __future__ import annotations

import re

# Special tokens as the major families spell them: <|im_start|>, <｜User｜>, <<SYS>>, <think>,
# </tool_call>, <start_of_turn>, <s>, [INST], [/TOOL_RESULTS], <|START_OF_TURN_TOKEN|>.
SPECIAL_TOKEN = re.compile(
    r"<[|｜][^<>\n]{0,80}?[|｜]>"
    r"|<<?/?[A-Za-z_][\w.:\-]{0,60}>>?"
    r"|\[/?[A-Z][A-Z0-9_]{1,60}\]"
    r"|</?[a-z][\w\-]{0,40}(?::[\w\-]{1,40})?>"
    r"|<[|｜]?[A-Za-z_]{1,20}[|｜]?>"
)
WORD = re.compile(r"[^\W\d_]+")
# Words that name roles or act as markers in real templates' literal text.
ROLE_WORDS = frozenset((
    "system", "user", "assistant", "model", "tool", "tools", "ipython", "human", "bot", "ai", "function",
    "functions", "developer", "observation", "response", "instruction", "instructions", "question",
    "answer", "gpt", "correct", "chatbot", "input", "output", "context", "documents", "document",
    "results", "result", "call", "calls", "sep", "start", "end", "of", "turn", "token", "header", "im",
    "eot", "eos", "bos", "pad", "text", "image", "images", "video", "audio", "available", "inst", "sys",
    "prompt", "prompts", "channel", "message", "messages", "analysis", "commentary", "final", "think",
    "thinking", "reasoning", "begin", "pre", "python", "tag",
))
# JSON keys and type names that tool-call formats spell out in literal text.
FORMAT_WORDS = frozenset((
    "json", "name", "names", "arguments", "argument", "parameters", "parameter", "type", "types",
    "content", "id", "call_id", "tool_call", "tool_calls", "object", "string", "number", "integer",
    "boolean", "array", "null", "true", "false", "properties", "required", "description", "enum", "items",
    "default", "value", "values", "role", "index", "args", "kwargs", "code", "interpreter",
))

URL = re.compile(r"(?i)\b(?:https?|ftp|file|javascript|data):/*[^\s'\"<>]+|\bwww\.[a-z0-9\-]+\.[a-z]{2,}"
                 r"|\b[a-z0-9\-]{2,}\.(?:com|net|org|io|ru|cn|xyz|info|biz|top|app|dev|ly|gg|co|me|sh|to|su"
                 r"|pw|tk|site|online|link|click|live|example)\b"
                 r"|!\[[^\]]*\]\(")
EMAIL = re.compile(r"[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+")
BASE64 = re.compile(r"(?<![\w+/])[A-Za-z0-9+/]{40,}={0,2}(?![\w+/])")
HEX = re.compile(r"(?i)(?<![0-9a-z])(?:0x)?[0-9a-f]{32,}(?![0-9a-z])")
HTML_COMMENT = re.compile(r"<!--")
CONCEAL = re.compile(
    r"(?i)\b(?:do\s+not|don'?t|never|must\s+not|should\s+not)\s+(?:ever\s+)?"
    r"(?:mention|reveal|disclose|tell|say|show|admit|acknowledge|repeat|discuss|explain)\b"
    r"|\bignore\s+(?:all\s+|any\s+|the\s+)?(?:previous|prior|above|earlier|preceding|user'?s?)\b"
    r"|\bwithout\s+(?:mentioning|telling|revealing|disclosing)\b"
    r"|\bkeep\s+(?:this|it|these)\s+(?:a\s+)?(?:secret|hidden|confidential)\b"
    r"|\b(?:secretly|covertly|silently)\b"
    r"|\bdisregard\s+(?:all\s+|any\s+|the\s+)?(?:previous|prior|above|instructions)\b"
)

STRUCTURE, WHITESPACE, TEXT = "structure", "whitespace", "text"


def strip_special(text: str) -> str:
    return SPECIAL_TOKEN.sub(" ", text)


def classify(text: str) -> str:
    """`whitespace`, `structure` (special tokens, role markers, punctuation, JSON keys, a lone
    word such as a cycler's "odd") or `text` (two words or more that are none of those)."""
    if not text.strip():
        return WHITESPACE
    rest = strip_special(text)
    words = 0
    for word in WORD.findall(rest):
        low = word.lower()
        if low not in ROLE_WORDS and low not in FORMAT_WORDS:
            # Scripts written without spaces (Chinese, Japanese, Thai) put a sentence in one "word".
            words += 2 if len(word) >= 4 and not word.isascii() else 1
            if words >= 2:
                return TEXT
    return STRUCTURE


def text_segments(text: str) -> list[str]:
    """The natural-language runs of a literal, between its special tokens, whitespace collapsed."""
    out = []
    for part in SPECIAL_TOKEN.split(text):
        shown = " ".join(part.split())
        if shown and classify(shown) == TEXT:
            out.append(shown)
    return out


def payloads(text: str) -> list[str]:
    """What in an emitted literal has no place in a chat template's own output."""
    found = []
    checks = (("a URL", URL), ("an e-mail address", EMAIL), ("an HTML comment", HTML_COMMENT),
              ("an instruction to conceal or override", CONCEAL), ("a hex blob", HEX),
              ("a base64 blob", BASE64))
    for what, pattern in checks:
        m = pattern.search(text)
        if m is not None:
            found.append(f"{what} ({m.group()[:80]!r})")
    return found


_PADDING = re.compile(r"(?:[ \t\u00a0\u3000]{64,}|(?:[ \t]*\n){8,}[ \t]*)(?=\S)")


def padding(text: str) -> int:
    """The longest run of blanks (64+ spaces or 8+ empty lines) right before visible text: text
    pushed out of an editor's view. 0 when there is none."""
    return max((len(m.group()) for m in _PADDING.finditer(text)), default=0)
