"""Dockerfile words: quotes, escapes and `$VAR` substitution, as BuildKit's shell lexer does them.

Instructions other than RUN, CMD and ENTRYPOINT (whose text a shell reads later)
have their arguments processed here (`frontend/dockerfile/shell/lex.go` in
moby/buildkit):

- outside quotes the escape character (`\\` unless `# escape=` says otherwise)
  makes the next character literal; unquoted blanks separate words;
- inside single quotes everything is literal;
- inside double quotes `$` expands, and the escape character only escapes
  `"`, `$` and itself;
- `$NAME`, `${NAME}`, `${NAME:-word}`, `${NAME-word}`, `${NAME:+word}`,
  `${NAME+word}`, `${NAME:?message}`, `${NAME?message}`; an unset name is
  empty. The `:` forms treat an empty value as unset.
"""
from __future__ import annotations

from framework.errors import ContainerError

Env = dict[str, str]


class WordError(ContainerError):
    """A word cannot be read: an unclosed quote or `${`, a bad substitution, a `${X:?}` unset."""


class _Lexer:
    def __init__(self, text: str, env: Env, escape: str) -> None:
        self.text = text
        self.pos = 0
        self.env = env
        self.escape = escape

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def take(self) -> str:
        char = self.peek()
        self.pos += 1
        return char

    def words(self, split: bool) -> list[str]:
        """The text as words (`split`), or as one word with its blanks kept."""
        words: list[str] = []
        current: list[str] = []
        started = False
        while self.pos < len(self.text):
            char = self.peek()
            if split and char in " \t\r\n":
                self.pos += 1
                if started:
                    words.append("".join(current))
                    current, started = [], False
                continue
            started = True
            if char == "'":
                current.append(self.single_quoted())
            elif char == '"':
                current.append(self.double_quoted())
            elif char == "$":
                current.append(self.dollar())
            elif char == self.escape:
                self.pos += 1
                current.append(self.take() if self.pos < len(self.text) else self.escape)
            else:
                current.append(self.take())
        if started or not split:
            words.append("".join(current))
        return words

    def single_quoted(self) -> str:
        self.pos += 1
        end = self.text.find("'", self.pos)
        if end < 0:
            raise WordError(f"unclosed single quote in {self.text!r}")
        value = self.text[self.pos:end]
        self.pos = end + 1
        return value

    def double_quoted(self) -> str:
        self.pos += 1
        out: list[str] = []
        while True:
            if self.pos >= len(self.text):
                raise WordError(f"unclosed double quote in {self.text!r}")
            char = self.peek()
            if char == '"':
                self.pos += 1
                return "".join(out)
            if char == "$":
                out.append(self.dollar())
            elif char == self.escape and self.pos + 1 < len(self.text) and \
                    self.text[self.pos + 1] in ('"', "$", self.escape):
                self.pos += 1
                out.append(self.take())
            else:
                out.append(self.take())

    def name(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and (self.text[self.pos].isalnum() or self.text[self.pos] == "_"):
            self.pos += 1
        return self.text[start:self.pos]

    def dollar(self) -> str:
        self.pos += 1
        if self.peek() != "{":
            name = self.name()
            return self.env.get(name, "") if name else "$"
        self.pos += 1
        name = self.name()
        if not name:
            raise WordError(f"bad substitution in {self.text!r}")
        char = self.take()
        if char == "}":
            return self.env.get(name, "")
        colon = char == ":"
        if colon:
            char = self.take()
        if char not in ("-", "+", "?"):
            raise WordError(f"unsupported modifier {char!r} in ${{{name}...}} of {self.text!r}")
        word = self.until_brace()
        value = self.env.get(name)
        unset = value is None or (colon and value == "")
        if char == "-":
            return word if unset else value  # type: ignore[return-value]
        if char == "+":
            return "" if unset else word
        if unset:
            raise WordError(f"{name}: {word or 'is not set'}")
        return value  # type: ignore[return-value]

    def until_brace(self) -> str:
        """The word of `${NAME:-word}`, itself expanded, up to the closing brace."""
        out: list[str] = []
        while True:
            if self.pos >= len(self.text):
                raise WordError(f"missing '}}' in {self.text!r}")
            char = self.peek()
            if char == "}":
                self.pos += 1
                return "".join(out)
            if char == "$":
                out.append(self.dollar())
            elif char == "'":
                out.append(self.single_quoted())
            elif char == '"':
                out.append(self.double_quoted())
            elif char == self.escape and self.pos + 1 < len(self.text):
                self.pos += 1
                out.append(self.take())
            else:
                out.append(self.take())


def word(text: str, env: Env, escape: str = "\\") -> str:
    """`text` as one word: quotes removed, escapes applied, variables substituted, blanks kept."""
    return _Lexer(text, env, escape).words(split=False)[0]


def words(text: str, env: Env, escape: str = "\\") -> list[str]:
    """`text` split into words at unquoted blanks, each processed as `word` does."""
    return _Lexer(text, env, escape).words(split=True)


def raw_words(text: str, escape: str = "\\") -> list[str]:
    """`text` split at unquoted blanks with quotes and escapes left in place (so each piece
    can be processed later, `KEY="a b"` staying one piece)."""
    pieces: list[str] = []
    current: list[str] = []
    quote = ""
    index = 0
    while index < len(text):
        char = text[index]
        if quote:
            current.append(char)
            if char == escape and quote == '"' and index + 1 < len(text):
                index += 1
                current.append(text[index])
            elif char == quote:
                quote = ""
        elif char in " \t\r\n":
            if current:
                pieces.append("".join(current))
                current = []
        else:
            current.append(char)
            if char in ("'", '"'):
                quote = char
            elif char == escape and index + 1 < len(text):
                index += 1
                current.append(text[index])
        index += 1
    if quote:
        raise WordError(f"unclosed quote in {text!r}")
    if current:
        pieces.append("".join(current))
    return pieces


def pairs(text: str, env: Env, escape: str, keyword: str, legacy: bool = True) -> list[tuple[str, str]]:
    """`KEY=VALUE ...` (ENV, LABEL), or the old one-pair form `KEY VALUE WITH BLANKS`."""
    pieces = raw_words(text, escape)
    if not pieces:
        raise WordError(f"{keyword} needs at least one argument")
    if "=" not in pieces[0] or pieces[0].startswith("="):
        if not legacy:
            raise WordError(f"{keyword} takes KEY=VALUE pairs")
        if len(pieces) < 2:
            raise WordError(f"{keyword} {pieces[0]}: expected KEY=VALUE or KEY VALUE")
        key = word(pieces[0], env, escape)
        rest = text.strip()[len(pieces[0]):].strip()
        return [(key, word(rest, env, escape))]
    found = []
    for piece in pieces:
        key, sep, value = piece.partition("=")
        if not sep or not key:
            raise WordError(f"{keyword}: {piece!r} is not KEY=VALUE")
        found.append((word(key, env, escape), word(value, env, escape)))
    return found
