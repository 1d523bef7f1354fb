"""The induction demo run: a 2-layer model trained from scratch forms an induction head (fixed seed)."""

import numpy as np
import pytest

pytest.importorskip("torch")

from tensorboard_plugin_attention import read_attention  # noqa: E402
from tensorboard_plugin_attention.demo.induction import best_induction, train_induction  # noqa: E402


def test_an_induction_head_forms(tmp_path):
    steps = train_induction(str(tmp_path), steps=200, checkpoints=10, probes=2, seed=0)
    examples = read_attention(str(tmp_path), queries_keys=False)
    assert sorted({e.step for e in examples}) == steps
    first = np.mean([best_induction(e) for e in examples if e.step == steps[0]])
    last = np.mean([best_induction(e) for e in examples if e.step == steps[-1]])
    # At initialisation a causal head spreads its mass over ~i+1 earlier tokens, so the attention on the
    # induction target (the token after the previous occurrence) is about 1/(i+1) ~ 0.05 on these 33-token
    # sequences. A formed induction head puts most of its mass there (0.8-0.97 measured with this seed at
    # step 140+). 0.15 and 0.5 leave wide margins on both sides while still separating the two regimes.
    assert first < 0.15, first
    assert last > 0.5, last
    assert last > 4 * first


def test_the_heads_view_ranks_the_induction_head_first_at_late_steps(tmp_path):
    """What the Heads view shows (derived.TagScores, as /headscores): the induction head on top by the mean
    induction score over the probes at the last step, in a layer after the first (it needs a previous-token
    head below it), with that mean equal to the per-example scores' mean."""
    from tensorboard_plugin_attention import derived, reader

    steps = train_induction(str(tmp_path), steps=200, checkpoints=4, probes=3, seed=0)
    examples = [e for e in read_attention(str(tmp_path), queries_keys=False) if e.step == steps[-1]]
    runs, _ = reader.open_logdir(str(tmp_path))
    (run,) = runs
    scores = derived.TagScores(runs[run].examples, examples[0].tag)
    assert scores.steps == steps
    at = scores.at(steps[-1])
    mean = np.array(at["metrics"]["induction"]["mean"], float)
    layer, head = np.unravel_index(np.nanargmax(mean), mean.shape)
    assert layer >= 1 and mean[layer, head] > 0.5, mean
    per_example = [e.header["metrics"]["decoder"]["induction"][layer][head] for e in examples]
    assert abs(mean[layer, head] - np.mean(per_example)) < 1e-9
    first = np.array(scores.at(steps[0])["metrics"]["induction"]["mean"], float)
    assert first[layer, head] < 0.15, first
    # on repeated sequences an induction head is a copy-paste (retrieval) head: its largest weight is on the
    # earlier copy of the next token (Wu et al. 2024's score, teacher-forced)
    retrieval = np.array(at["metrics"]["retrieval"]["mean"], float)
    assert retrieval[layer, head] == np.nanmax(retrieval) and retrieval[layer, head] > 0.5, retrieval
    assert examples[0].header["kinds"]["decoder"]["has_value_norms"]  # the demo logs value norms
