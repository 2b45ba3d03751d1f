"""Every reader fed hostile bytes: random and truncated files, wrong types, missing and extra fields, repeated
ids, empty files and text that is not UTF-8. Each run either succeeds with counts that add up or ends with a
UserError (one line); through the real CLI, exit code 0, or 2 with one line and no traceback.

CI runs few examples per test (the whole file well under a minute). A longer campaign:
    RAGTRAIN_FUZZ_EXAMPLES=2000 python -m pytest tests/test_fuzz.py --hypothesis-show-statistics
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from ragtrain.cli import app
from ragtrain.data.documents import read_documents
from ragtrain.data.evaldata import load_eval_data
from ragtrain.data.labelled import load_beir
from ragtrain.data.pairfiles import read_pairs
from ragtrain.data.readers import Fields
from ragtrain.data.triples import load_triples
from ragtrain.errors import UserError
from tests.conftest import write_files

EXAMPLES = int(os.environ.get("RAGTRAIN_FUZZ_EXAMPLES", "25"))
fuzz = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
cli_fuzz = settings(max_examples=max(4, EXAMPLES // 3), deadline=None, suppress_health_check=[HealthCheck.too_slow])
runner = CliRunner()

WORDS = ["bread", "oven", "yeast", "planet", "orbit", "river", "fish", "cache", "memory", "chain", "wheel", "the"]
TEXTS = [" ".join(WORDS[i:i + 6]) for i in range(6)] + ["", " ", "x"]
IDS = ["d1", "d2", "q1", "q2", "1", "", " "]  # few, so ids repeat
FIELDS = ["_id", "text", "title", "query", "positive", "positives", "negatives", "negative", "body"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(), st.text(max_size=10),
                    st.sampled_from(TEXTS + IDS + ["inf", "nan", "1.5"]))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                           max_leaves=6)
field_values = st.one_of(json_values, st.sampled_from(TEXTS + IDS), st.lists(st.sampled_from(TEXTS), max_size=3))


def rows_of(fields: list[str], good: dict) -> st.SearchStrategy:
    """Rows that are mostly well formed (`good`: field -> strategy) with wrong, missing and extra fields mixed in."""
    wild = st.dictionaries(st.sampled_from(fields), field_values, max_size=5)
    return st.lists(st.one_of(st.fixed_dictionaries(good), st.fixed_dictionaries(good).flatmap(
        lambda row: wild.map(lambda extra: row | extra)), wild, json_values), max_size=8)


def jsonl(rows: list) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


@st.composite
def hostile(draw, text: st.SearchStrategy) -> bytes:
    """A file's bytes: the structured text as it is, truncated, with a byte that is not UTF-8, random, or empty."""
    kind = draw(st.sampled_from(["as is", "as is", "truncated", "not utf-8", "random", "empty"]))
    if kind == "random":
        return draw(st.binary(max_size=200))
    if kind == "empty":
        return draw(st.sampled_from([b"", b"\n", b"  \n\n", b"\xef\xbb\xbf"]))
    data = draw(text).encode("utf-8")
    at = draw(st.integers(0, len(data)))
    if kind == "truncated":
        return data[:at]
    if kind == "not utf-8":
        return data[:at] + draw(st.sampled_from([b"\xff", b"\xe9", b"\xc3", b"\x80\x80", b"\x00"])) + data[at:]
    return data


words = st.lists(st.sampled_from(WORDS + ["#", "##", "```", "===", "---", "- ", "*", ".", "\n", "\n\n", "<p>", "</p>",
                                          "<h1>", "</h1>", "<pre>", "<script>", "&amp;", "Title:", ":", '"', ","]),
                 max_size=40).map(" ".join)
id_values = st.one_of(st.sampled_from(IDS), json_values)
text_values = st.one_of(st.sampled_from(TEXTS), json_values)
document_rows = rows_of(FIELDS, {"_id": id_values, "text": st.sampled_from(TEXTS), "title": text_values})


def delimited(separator: str) -> st.SearchStrategy:
    cells = st.one_of(st.sampled_from(TEXTS + IDS), st.text(max_size=8), st.just('"quoted, "" cell"'))
    header = st.lists(st.sampled_from(FIELDS), min_size=1, max_size=4)
    return st.tuples(header, st.lists(st.lists(cells, max_size=5), max_size=6)).map(
        lambda t: "\n".join(separator.join(row) for row in [t[0], *t[1]]))


DOCUMENT_TEXT = {
    ".txt": words, ".md": words, ".rst": words, ".html": words,
    ".jsonl": document_rows.map(jsonl),
    ".json": st.one_of(document_rows.map(json.dumps), json_values.map(json.dumps)),
    ".csv": delimited(","), ".tsv": delimited("\t"),
}


def expect_user_error_or(check, *args):
    """Run `check(*args)`; a UserError must be one line. Any other exception fails the test."""
    try:
        return check(*args)
    except UserError as exc:
        assert str(exc).strip() and "\n" not in str(exc).strip(), str(exc)
        return None


# ------------------------------------------------------------------------------------------- document formats
@fuzz
@given(suffix=st.sampled_from(sorted(DOCUMENT_TEXT)), data=st.data())
def test_every_document_format_reads_or_refuses_in_one_line(suffix, data):
    content = data.draw(hostile(DOCUMENT_TEXT[suffix]))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"doc{suffix}"
        path.write_bytes(content)
        counts: Counter = Counter()
        documents = expect_user_error_or(read_documents, (path,), Fields(), counts)
        if documents is None:
            return
        assert counts["files"] == 1 == counts["files_read"] + counts["files_skipped_empty"] + counts["files_skipped_binary"]
        assert counts["documents"] == len(documents) and all(d.text.strip() for d in documents)
        assert (counts["files_read"] == 1) == bool(documents)
        assert len({d.doc_id for d in documents}) == len(documents)  # a repeated id is renamed, never lost


# --------------------------------------------------------------------------------------------- pairs, triples
pair_rows = rows_of(FIELDS, {"query": text_values, "positive": text_values,
                             "negatives": st.lists(st.sampled_from(TEXTS), max_size=3)})
triple_rows = rows_of(FIELDS, {"query": text_values, "positive": text_values,
                               "negatives": st.one_of(st.lists(st.sampled_from(TEXTS), max_size=3), text_values)})


def lines_with_content(content: bytes) -> int:
    return sum(1 for line in content.decode("utf-8-sig").splitlines() if line.strip())


@fuzz
@given(content=hostile(pair_rows.map(jsonl)))
def test_pairs_file_reads_or_refuses_in_one_line(content):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pairs.jsonl"
        path.write_bytes(content)
        pairs = expect_user_error_or(lambda p: read_pairs(p)[0], path)
        if pairs is not None:
            assert len(pairs) == lines_with_content(content)  # one pair per line, none dropped silently
            assert all(q.strip() and positives and all(p.strip() for p in positives) for q, positives, _ in pairs)


@fuzz
@given(content=hostile(st.one_of(triple_rows.map(jsonl), triple_rows.map(json.dumps))))
def test_triples_file_reads_or_refuses_in_one_line(content):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.jsonl"
        path.write_bytes(content)
        triples = expect_user_error_or(load_triples, path)
        if triples is not None:
            assert triples and all(t.query.strip() and t.positive.strip() for t in triples)
            if not content.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"["):
                assert len(triples) == lines_with_content(content)


# ------------------------------------------------------------------------------------ BEIR folders, eval JSON
beir_corpus = rows_of(FIELDS, {"_id": st.sampled_from(IDS[:5]), "title": text_values, "text": st.sampled_from(TEXTS)})
beir_queries = rows_of(FIELDS, {"_id": st.sampled_from(IDS[:5]), "text": text_values})
qrels_rows = st.lists(st.lists(st.sampled_from(IDS + ["1", "0", "2", "-1", "inf", "nan", "1.5", "x", "score"]),
                               min_size=0, max_size=4).map("\t".join), max_size=8)
qrels_text = st.tuples(st.sampled_from(["query-id\tcorpus-id\tscore\n", ""]), qrels_rows).map(
    lambda t: t[0] + "\n".join(t[1]))


@st.composite
def beir_folder(draw) -> dict[str, bytes]:
    return {"corpus.jsonl": draw(hostile(beir_corpus.map(jsonl))),
            "queries.jsonl": draw(hostile(beir_queries.map(jsonl))),
            "qrels/train.tsv": draw(hostile(qrels_text)),
            "qrels/test.tsv": draw(hostile(qrels_text))}


@fuzz
@given(files=beir_folder())
def test_beir_folder_loads_for_evaluation_or_refuses_in_one_line(files):
    with tempfile.TemporaryDirectory() as tmp:
        root = write_files(Path(tmp), files)
        data = expect_user_error_or(load_eval_data, root, "test")
        if data is None:
            return
        corpus_rows = lines_with_content(files["corpus.jsonl"])
        assert len(data.corpus_ids) + data.dropped.get("corpus_duplicate_ids", 0) == corpus_rows
        assert len(set(data.corpus_ids)) == len(data.corpus_ids) and data.query_ids == sorted(data.qrels)
        assert all(text.strip() for text in data.query_texts)
        assert all(d in set(data.corpus_ids) and isinstance(g, int) for judged in data.qrels.values() for d, g in judged.items())


@fuzz
@given(files=beir_folder())
def test_beir_folder_for_prepare_data_reads_or_refuses_in_one_line(files):
    with tempfile.TemporaryDirectory() as tmp:
        root = write_files(Path(tmp), files)
        counts: Counter = Counter()
        read = expect_user_error_or(load_beir, root, counts)
        if read is None:
            return
        corpus, queries, qrels = read
        assert len(corpus) + counts["corpus_duplicate_ids"] == lines_with_content(files["corpus.jsonl"])
        assert "train" in qrels and all(text.strip() for text in queries.values())
        for judged in qrels.values():  # what is kept is what evaluate accepts
            assert all(q in queries and all(d in corpus for d in docs) for q, docs in judged.items())
            assert any(g > 0 for docs in judged.values() for g in docs.values())


eval_json = st.fixed_dictionaries({
    "queries": st.one_of(st.dictionaries(st.sampled_from(IDS), text_values, max_size=4), json_values),
    "corpus": st.one_of(st.dictionaries(st.sampled_from(IDS), st.one_of(text_values, st.fixed_dictionaries(
        {"title": text_values, "text": text_values})), max_size=4), json_values),
    "relevant_docs": st.one_of(st.dictionaries(st.sampled_from(IDS), st.one_of(
        st.lists(st.one_of(st.sampled_from(IDS), json_values), max_size=3),
        st.dictionaries(st.sampled_from(IDS), st.one_of(st.integers(-1, 3), json_values), max_size=3),
        json_values), max_size=4), json_values),
}).map(json.dumps)


@fuzz
@given(content=hostile(st.one_of(eval_json, json_values.map(json.dumps))))
def test_evaluation_json_loads_or_refuses_in_one_line(content):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "eval.json"
        path.write_bytes(content)
        data = expect_user_error_or(load_eval_data, path, "ignored")
        if data is not None:
            assert data.query_ids and len(data.query_ids) == len(data.query_texts) == len(data.qrels)
            assert all(isinstance(g, int) for judged in data.qrels.values() for g in judged.values())


# ------------------------------------------------------------------------------------- the CLI, each command
def assert_clean_exit(args: list[str]) -> None:
    """Exit 0, or exit 2 with exactly one line and no traceback."""
    result = runner.invoke(app, args)
    assert result.exit_code in (0, 2), (result.exit_code, result.output, result.exception)
    if result.exit_code == 2:
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in result.output, result.output


PREPARE_OPTIONS = ["--max-words", "30", "--overlap", "4", "--negatives", "1", "--negative-range", "1-20",
                   "--val-fraction", "0.2", "--test-fraction", "0.2"]


@cli_fuzz
@given(suffix=st.sampled_from(sorted(DOCUMENT_TEXT)), data=st.data())
def test_cli_prepare_data_documents(suffix, data):
    contents = [data.draw(hostile(DOCUMENT_TEXT[suffix])) for _ in range(3)]
    with tempfile.TemporaryDirectory() as tmp:
        docs = Path(tmp) / "docs"
        docs.mkdir()
        for n, content in enumerate(contents):
            (docs / f"{n}{suffix}").write_bytes(content)
        assert_clean_exit(["prepare-data", str(docs), "-o", str(Path(tmp) / "out"), *PREPARE_OPTIONS])


@cli_fuzz
@given(content=hostile(pair_rows.map(jsonl)))
def test_cli_prepare_data_pairs(content):
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "pairs.jsonl").write_bytes(content)
        assert_clean_exit(["prepare-data", "--pairs", str(Path(tmp) / "pairs.jsonl"), "-o", str(Path(tmp) / "out"),
                           *PREPARE_OPTIONS])


@cli_fuzz
@given(files=beir_folder())
def test_cli_prepare_data_beir(files):
    with tempfile.TemporaryDirectory() as tmp:
        root = write_files(Path(tmp) / "beir", files)
        assert_clean_exit(["prepare-data", "--beir", str(root), "-o", str(Path(tmp) / "out"), *PREPARE_OPTIONS])


@cli_fuzz
@given(content=hostile(st.one_of(triple_rows.map(jsonl), triple_rows.map(json.dumps))))
def test_cli_train_on_hostile_triples(content):
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "train.jsonl").write_bytes(content)
        # a model that is not there: good triples end at the model load, with one line, before any training
        assert_clean_exit(["train", "--train-data", str(Path(tmp) / "train.jsonl"), "--model", str(Path(tmp) / "none"),
                           "-o", str(Path(tmp) / "run")])


@cli_fuzz
@given(files=beir_folder(), json_file=hostile(eval_json))
def test_cli_evaluate_on_hostile_evaluation_data(files, json_file):
    with tempfile.TemporaryDirectory() as tmp:
        root = write_files(Path(tmp) / "beir", files)
        (Path(tmp) / "eval.json").write_bytes(json_file)
        assert_clean_exit(["evaluate", "bm25", "--eval-data", str(root), "--k", "1,3"])
        assert_clean_exit(["evaluate", "bm25", "--eval-data", str(Path(tmp) / "eval.json"), "--k", "1,3"])


@pytest.mark.parametrize("name, make", [
    ("train.jsonl", lambda: (json.dumps({"query": "q", "positive": "p" * 64, "negatives": []}) + "\n").encode()),
    ("pairs.jsonl", lambda: (json.dumps({"query": "q", "positive": "p" * 64}) + "\n").encode()),
    ("corpus.jsonl", lambda: (json.dumps({"_id": "d1", "text": "p" * 64}) + "\n").encode()),
])
def test_a_line_over_the_bound_is_refused_without_reading_the_rest(tmp_path, monkeypatch, name, make):
    import ragtrain.files.jsonfiles as jsonfiles

    monkeypatch.setattr(jsonfiles, "MAX_LINE_BYTES", 32)
    path = tmp_path / name
    path.write_bytes(make() * 3)
    reader = {"train.jsonl": load_triples, "pairs.jsonl": read_pairs,
              "corpus.jsonl": lambda p: jsonfiles.read_jsonl(p, "corpus")}[name]
    with pytest.raises(UserError, match=rf"{name}:1: line longer than"):
        reader(path)
