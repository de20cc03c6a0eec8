"""Reading Dockerfiles: Docker's grammar, substitution rules, and errors that name the line."""
from __future__ import annotations

import pytest

from executor.images.dockerfile import words
from executor.images.dockerfile.builder import duration_ns
from executor.images.dockerfile.parse import DockerfileError, parse


def test_continuations_comments_directives_and_forms() -> None:
    dockerfile = parse(
        "# syntax=docker/dockerfile:1\n"
        "# escape=`\n"
        "\n"
        "ARG BASE=scratch\n"
        "from $BASE AS Build\n"
        "RUN echo one `\n"
        "    # a comment between continued lines is dropped\n"
        "    two\n"
        'COPY --chown=1:2 ["a b", "c", "/dest/"]\n'
        "CMD [not json\n"
        "healthcheck --interval=5s --retries=3 CMD [\"true\"]\n"
        "FROM build\n", path="app.Dockerfile")
    assert dockerfile.escape == "`"
    assert [str(i) for i in dockerfile.global_args] == ["ARG BASE=scratch"]
    first, second = dockerfile.stages
    assert (first.name, first.base, first.origin.line) == ("build", "$BASE", 5)
    run, copy, cmd, check = first.instructions
    assert (run.keyword, run.line, run.text) == ("RUN", 6, "echo one     two")
    assert copy.exec_form == ("a b", "c", "/dest/") and copy.flag("chown") == "1:2" and copy.line == 9
    assert cmd.exec_form is None and cmd.text == "[not json"  # not a JSON array: shell form, as Docker reads it
    assert check.flag("interval") == "5s" and check.flag("retries") == "3"
    assert dockerfile.stage("BUILD") is first and dockerfile.stage("1") is second and dockerfile.stage("x") is None


@pytest.mark.parametrize("text, message", [
    ("FROM scratch\nRUN true\nFROBNICATE x\n", "app:3: unknown instruction: FROBNICATE"),
    ("FROM scratch\nVOLUME /data\n", "app:2: VOLUME is not supported: a task's volumes come from"),
    ("FROM scratch\nMAINTAINER me\n", "app:2: MAINTAINER is not supported"),
    ("RUN true\nFROM scratch\n", "app:1: RUN before the first FROM"),
    ("FROM scratch\nRUN --mount=type=cache,target=/x true\n", "app:2: RUN: flag --mount is not supported"),
    ("FROM scratch\nCOPY --from a /\n", "app:2: COPY: flag --from needs a value"),
    ("FROM scratch\nCOPY --link a /\n", "app:2: COPY: flag --link is not supported"),
    ("FROM scratch\nCOPY --parents=true a /\n", "app:2: COPY: flag --parents is not supported"),
    ("FROM scratch\nCOPY onlyone\n", "app:2: COPY: needs at least one source and a destination"),
    ("FROM scratch\nSHELL /bin/bash -c\n", "app:2: SHELL: takes a JSON array"),
    ("FROM scratch\nHEALTHCHECK --interval=1s NONE\n", "app:2: HEALTHCHECK: NONE takes no options"),
    ("FROM scratch\nHEALTHCHECK curl x\n", "app:2: HEALTHCHECK: expected `HEALTHCHECK [OPTIONS] CMD"),
    ("FROM scratch AS a\nFROM scratch AS A\n", "app:2: FROM: stage name 'A' is used twice"),
    ("FROM scratch AS 1x\n", "app:1: FROM: invalid stage name"),
    ("FROM a b c d\n", "app:1: FROM: expected `FROM image [AS name]`"),
    ("# escape=x\nFROM scratch\n", "app:1: escape must be"),
    ("ARG X=1\n", "app: no FROM instruction"),
])
def test_errors_name_the_file_and_line(text: str, message: str) -> None:
    with pytest.raises(DockerfileError) as caught:
        parse(text, path="app")
    assert message in str(caught.value)


def test_substitution_quotes_and_escapes() -> None:
    env = {"A": "one", "EMPTY": "", "SP": "a b"}
    assert words.word("$A-${A}/\\$A/'$A'/\"$A\"", env) == "one-one/$A/$A/one"
    assert words.word("${MISSING:-dflt} ${EMPTY:-dflt} ${EMPTY-dflt} ${A:+alt} ${MISSING:+alt}", env) == \
        "dflt dflt  alt "
    assert words.word('"a \\"quoted\\" \\q"', env) == 'a "quoted" \\q'  # in double quotes only " $ \ escape
    assert words.words("$SP 'c d' e\\ f", env) == ["a b", "c d", "e f"]  # expansion is not split again
    with pytest.raises(words.WordError, match="MISSING: needed"):
        words.word("${MISSING:?needed}", env)
    with pytest.raises(words.WordError, match="unclosed"):
        words.word("'open", env)
    with pytest.raises(words.WordError, match="missing '}'"):
        words.word("${A:-x", env)


def test_env_and_label_pairs() -> None:
    env = {"V": "1"}
    assert words.pairs('a=$V b="two words" c=\\$V d=', env, "\\", "ENV") == \
        [("a", "1"), ("b", "two words"), ("c", "$V"), ("d", "")]
    assert words.pairs("KEY value with  blanks $V", env, "\\", "ENV") == [("KEY", "value with  blanks 1")]
    with pytest.raises(words.WordError, match="KEY=VALUE"):
        words.pairs("key value", env, "\\", "LABEL", legacy=False)


def test_durations() -> None:
    assert duration_ns("1m30s", "x") == 90_000_000_000 and duration_ns("250ms", "x") == 250_000_000
    with pytest.raises(Exception, match="not a duration"):
        duration_ns("5 seconds", "x")
