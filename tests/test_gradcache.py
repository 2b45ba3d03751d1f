"""GradCache: the same gradients as the plain computation, dropout included."""

from __future__ import annotations

import pytest
import torch

from ragtrain.data.triples import Triple, collate, tokenize_triples
from ragtrain.model.loading import load_encoder
from ragtrain.model.settings import TextOptions
from ragtrain.training.gradcache import RandContext, chunks, grad_cache_step
from ragtrain.training.loss import info_nce
from tests.conftest import gradients

TEMPERATURE = 0.05
TRIPLES = [
    Triple("cat question", "a cat sat on the mat", ("a dog ran in the park", "birds fly south")),
    Triple("oven question here", "the oven bakes bread", ()),
    Triple("planet", "a planet moves in orbit around the sun", ("the river flows to the sea",)),
    Triple("code question", "python code runs fast", ("a bike has two wheels", "stars shine", "fish swim")),
    Triple("tree question", "a tree grows tall", ("the city has lanes",)),
]


def loss_fn(query_emb, doc_emb):
    return info_nce(query_emb, doc_emb, TEMPERATURE)


def loss_and_value(query_emb, doc_emb):
    """grad_cache_step's contract: the loss to backpropagate and what to report."""
    loss = loss_fn(query_emb, doc_emb)
    return loss, loss.item()


@pytest.fixture
def batch_and_encoder(tiny_model):
    encoder = load_encoder(str(tiny_model), TextOptions(max_length=64))
    data = tokenize_triples(TRIPLES, encoder)
    queries, docs = collate(data, list(range(len(TRIPLES))), encoder.pad_id)
    return encoder, queries, docs


def assert_same_grads(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys() and len(actual) > 0
    for name, grad in actual.items():
        torch.testing.assert_close(grad, expected[name], atol=1e-5, rtol=0, msg=name)


@pytest.mark.parametrize("mini_batch_size", [1, 2, 3, 64])
def test_grad_cache_equals_full_batch_gradient(batch_and_encoder, mini_batch_size):
    encoder, queries, docs = batch_and_encoder
    encoder.eval()  # no dropout: the full batch and the chunks see the same network
    expected_loss = loss_fn(encoder(**queries), encoder(**docs))
    expected_loss.backward()
    expected = gradients(encoder)
    encoder.zero_grad(set_to_none=True)
    loss = grad_cache_step(encoder, queries, docs, loss_and_value, mini_batch_size)
    assert loss == pytest.approx(expected_loss.item(), abs=1e-6)
    assert_same_grads(gradients(encoder), expected)


def test_grad_cache_replays_the_dropout_masks_of_the_first_pass(batch_and_encoder):
    """With dropout on, the reference embeds the same chunks in the same order with a graph, from the same
    seed: it draws the masks GradCache's first pass draws, so equal gradients mean the replay drew them too."""
    encoder, queries, docs = batch_and_encoder
    encoder.train()
    torch.manual_seed(7)
    parts = chunks(queries, 2) + chunks(docs, 2)
    embs = [encoder(**part) for part in parts]
    n_queries = len(chunks(queries, 2))
    loss_fn(torch.cat(embs[:n_queries]), torch.cat(embs[n_queries:])).backward()
    expected = gradients(encoder)
    encoder.zero_grad(set_to_none=True)
    torch.manual_seed(7)
    grad_cache_step(encoder, queries, docs, loss_and_value, 2)
    assert_same_grads(gradients(encoder), expected)


def test_dropout_is_really_on_in_the_replay_test(batch_and_encoder):
    """Guards the test above: without the saved RNG state two passes differ."""
    encoder, queries, _ = batch_and_encoder
    encoder.train()
    with torch.no_grad():
        first, second = encoder(**queries), encoder(**queries)
    assert not torch.allclose(first, second)


def test_rand_context_replays_and_leaves_the_outer_rng_alone():
    state = RandContext()
    first = torch.rand(3)
    after_first = torch.rand(1)
    torch.set_rng_state(state.cpu_state)
    torch.rand(3)
    with state:
        replay = torch.rand(3)
    assert torch.equal(replay, first)
    assert torch.equal(torch.rand(1), after_first)  # the replay did not move the outer generator


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_rand_context_replays_the_gpu_generator_too():
    """Dropout on a GPU draws from the CUDA generator: the replay must restore that one, not only the CPU's."""
    device = torch.device("cuda", torch.cuda.current_device())
    state = RandContext(torch.zeros(1, device=device))
    first = torch.rand(3, device=device)
    after_first = torch.rand(1, device=device)
    with state:
        replay = torch.rand(3, device=device)
    assert torch.equal(replay, first)
    assert torch.equal(torch.rand(1, device=device), after_first)  # the replay did not move the outer generator


def test_chunks_trim_padding_per_chunk():
    inputs = {"input_ids": torch.tensor([[5, 6, 0, 0], [5, 6, 7, 8], [5, 0, 0, 0]]),
              "attention_mask": torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]])}
    parts = chunks(inputs, 2)
    assert [p["input_ids"].shape for p in parts] == [(2, 4), (1, 1)]
    assert parts[1]["input_ids"].tolist() == [[5]]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", [torch.float16, torch.bfloat16])
def test_grad_cache_under_autocast_on_gpu_matches_the_uncached_step(batch_and_encoder, precision):
    """fp16/bf16 autocast: the cached and uncached gradients agree to half precision (RNG replay on CUDA too)."""
    encoder, queries, docs = batch_and_encoder
    encoder.cuda().train()
    queries, docs = ({k: v.cuda() for k, v in part.items()} for part in (queries, docs))

    def amp():
        return torch.autocast("cuda", dtype=precision)

    torch.manual_seed(5)
    with amp():
        embs = [encoder(**part).float() for part in chunks(queries, 2) + chunks(docs, 2)]
    n_queries = len(chunks(queries, 2))
    loss_fn(torch.cat(embs[:n_queries]), torch.cat(embs[n_queries:])).backward()
    expected = gradients(encoder)
    encoder.zero_grad(set_to_none=True)
    torch.manual_seed(5)
    grad_cache_step(encoder, queries, docs, loss_and_value, 2, autocast=amp)
    for name, grad in gradients(encoder).items():
        torch.testing.assert_close(grad, expected[name], atol=1e-2, rtol=1e-2, msg=name)
