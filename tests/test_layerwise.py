"""Layer-wise distillation: each token-level loss against hand-computed values and a gradient check,
the layer mapping and its errors, the taps against transformers' own outputs (BERT and MPNet), and
tiny end-to-end runs (one stage, two stages, a SIGKILL inside stage 1 resumed exactly)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from distill import losses
from distill.errors import DistillInputError
from distill.taps import EncoderTaps
from students.layerwise import parse_layer_map
from students.train import StudentConfig, run

# ---- losses: golden values ---------------------------------------------------------------------------------


def test_tinybert_hidden_mse_counts_real_tokens_only():
    s = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])  # [1, 2, 2]
    t = torch.zeros(1, 2, 2)
    # token 0 only: (1 + 4) / 2 features
    assert losses.tinybert_hidden_mse(s, t, torch.tensor([[1, 0]])).item() == pytest.approx(2.5)
    # both tokens: (1 + 4 + 9 + 16) / 4
    assert losses.tinybert_hidden_mse(s, t, torch.tensor([[1, 1]])).item() == pytest.approx(7.5)


def test_tinybert_attention_mse_over_real_query_key_pairs_and_heads():
    s = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [0.0, 2.0]]]])  # [1, 2 heads, 2, 2]
    t = torch.zeros_like(s)
    # all pairs: head 0 (1+4+9+16) + head 1 (4) over 2 heads x 4 pairs
    assert losses.tinybert_attention_mse(s, t, torch.tensor([[1, 1]])).item() == pytest.approx(34 / 8)
    # token 1 is padding: only pair (0, 0) of each head: (1 + 0) / 2
    assert losses.tinybert_attention_mse(s, t, torch.tensor([[1, 0]])).item() == pytest.approx(0.5)


def test_attention_kl_by_hand():
    s = torch.zeros(1, 1, 2, 2)  # uniform student: p_s = (1/2, 1/2)
    t = torch.tensor([[[[math.log(3.0), 0.0], [0.0, 0.0]]]])  # query 0: p_t = (3/4, 1/4); query 1 uniform
    kl0 = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert losses.attention_kl(s, t, torch.tensor([[1, 1]])).item() == pytest.approx(kl0 / 2, abs=1e-6)
    # key 1 padded: each real query's distribution is all on key 0 for both sides -> 0
    assert losses.attention_kl(s, t, torch.tensor([[1, 0]])).item() == pytest.approx(0.0, abs=1e-7)
    # a padded query is not counted: the same mean with a third, padded token
    s3, t3 = torch.zeros(1, 1, 3, 3), torch.zeros(1, 1, 3, 3)
    t3[0, 0, 0, 0] = math.log(3.0)
    assert losses.attention_kl(s3, t3, torch.tensor([[1, 1, 0]])).item() == pytest.approx(kl0 / 2, abs=1e-6)


def test_relation_scores_and_value_relation_kl():
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # [1, T=2, H=2]
    torch.testing.assert_close(losses.relation_scores(x, 1), torch.eye(2)[None, None] / math.sqrt(2))
    torch.testing.assert_close(losses.relation_scores(x, 2), torch.tensor([[[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 1.0]]]]))
    # widths may differ: a 4-wide student against the 2-wide teacher, 2 relation heads each
    s = torch.tensor([[[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0]]])
    mask = torch.ones(1, 2)
    want = losses.attention_kl(losses.relation_scores(s, 2), losses.relation_scores(x, 2), mask)
    assert losses.value_relation_kl(s, x, mask, heads=2).item() == pytest.approx(want.item())
    # student head 0: [[1/sqrt2, 0], [0, 0]] (d = 2), teacher head 0: [[1, 0], [0, 0]]; head 1 likewise
    def kl_row(a, b):  # KL(softmax(b) || softmax(a)) of one 2-key row
        pb = torch.softmax(torch.tensor(b), 0)
        return float((pb * (pb.log() - torch.log_softmax(torch.tensor(a), 0))).sum())
    by_hand = (kl_row([1 / math.sqrt(2), 0.0], [1.0, 0.0]) + kl_row([0.0, 0.0], [0.0, 0.0])  # head 0, queries 0 and 1
               + kl_row([0.0, 0.0], [0.0, 0.0]) + kl_row([0.0, 4 / math.sqrt(2)], [0.0, 1.0])) / 4  # head 1
    assert losses.value_relation_kl(s, x, mask, heads=2).item() == pytest.approx(by_hand, abs=1e-6)
    with pytest.raises(ValueError, match="not divisible by 3"):
        losses.relation_scores(x, 3)


def test_hidden_cosine_by_hand():
    s = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [5.0, 5.0]]])
    t = torch.tensor([[[0.0, 1.0], [2.0, 2.0], [-1.0, 0.0]]])
    assert losses.hidden_cosine(s, t, torch.tensor([[1, 1, 0]])).item() == pytest.approx(0.5)  # (1 + 0) / 2


def test_layer_objective_is_the_weighted_sum():
    terms = {k: torch.tensor(float(i + 1)) for i, k in enumerate(losses.LAYER_TERMS)}
    weights = dict(zip(losses.LAYER_TERMS, (0.5, 1.0, 0.0, 2.0, 0.0, 3.0)))
    assert losses.layer_objective(terms, weights).item() == pytest.approx(0.5 * 1 + 1 * 2 + 2 * 4 + 3 * 6)


def test_student_objective_intermediate_stage_trains_layers_only():
    logits, t = torch.tensor([[1.0, -1.0]]), torch.tensor([[0.0, 0.0]])
    out = losses.student_objective("classification", logits, t, torch.tensor([0]), None, alpha=0.5, beta=0.0,
                                   temperature=2.0, layer=torch.tensor(3.0), prediction=False)
    assert out["total"].item() == 3.0 and out["soft"].item() == 0.0 and out["hard"].item() == 0.0
    joint = losses.student_objective("classification", logits, t, torch.tensor([0]), None, alpha=0.5, beta=0.0,
                                     temperature=2.0, layer=torch.tensor(3.0))
    assert joint["total"].item() == pytest.approx(0.5 * joint["hard"].item() + 0.5 * joint["soft"].item() + 3.0)


@pytest.mark.parametrize("name", ["hidden_mse", "attention_mse", "attention_kl", "value_kl", "cosine"])
def test_layer_losses_pass_gradcheck(name):
    g = torch.Generator().manual_seed(0)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    if name in ("attention_mse", "attention_kl"):
        shape = (2, 2, 4, 4)
        fn = losses.tinybert_attention_mse if name == "attention_mse" else losses.attention_kl
    else:
        shape = (2, 4, 6)
        fn = {"hidden_mse": losses.tinybert_hidden_mse, "cosine": losses.hidden_cosine,
              "value_kl": lambda s, t, m: losses.value_relation_kl(s, t, m, heads=2)}[name]
    s = torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randn(*shape, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: fn(x, t, mask), (s,))
    # padding does not reach the loss: changing a padded token's values changes nothing
    s2 = s.detach().clone()
    s2[1, ..., 3, :] += 7.0 if len(shape) == 4 else 0.0
    if len(shape) == 3:
        s2[1, 3] += 7.0
    assert fn(s2, t, mask).item() == pytest.approx(fn(s.detach(), t, mask).item())


# ---- the layer mapping --------------------------------------------------------------------------------------


def test_layer_map_parsing():
    assert parse_layer_map("uniform", 4, 12) == [(0, 0), (1, 3), (2, 6), (3, 9), (4, 12)]
    assert parse_layer_map("uniform", 3, 6) == [(0, 0), (1, 2), (2, 4), (3, 6)]
    assert parse_layer_map("last", 4, 12) == [(4, 12)]
    assert parse_layer_map("2:5,0:0,1:3", 2, 6) == [(0, 0), (1, 3), (2, 5)]


@pytest.mark.parametrize("spec,match", [("0:1", "0 maps only to 0"), ("1:0", "0 maps only to 0"), ("3:1", "out of range"),
                                        ("1:7", "out of range"), ("1:2,1:3", "appears twice"), ("a:b", "is not student:teacher"),
                                        ("every", "is not student:teacher")])
def test_layer_map_errors_are_one_sentence(spec, match):
    with pytest.raises(DistillInputError, match=match):
        parse_layer_map(spec, 2, 6)


# ---- taps against transformers' own outputs ------------------------------------------------------------------


def _eager_outputs(model, batch):
    model.config._attn_implementation = "eager"  # transformers returns attention probabilities only from eager
    with torch.no_grad():
        return model(**batch, output_hidden_states=True, output_attentions=True)


@pytest.mark.parametrize("family", ["bert", "mpnet"])
def test_taps_equal_hidden_states_and_attention(family, tiny_bert, tmp_path):
    from transformers import AutoModelForSequenceClassification, BertTokenizerFast, MPNetConfig, MPNetForSequenceClassification

    tok = BertTokenizerFast.from_pretrained(tiny_bert)
    if family == "bert":
        model = AutoModelForSequenceClassification.from_pretrained(tiny_bert).eval()
    else:
        torch.manual_seed(0)
        model = MPNetForSequenceClassification(MPNetConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                                                           num_attention_heads=2, intermediate_size=64)).eval()
    batch = dict(tok(["a wonderful film", "dull"], padding=True, return_tensors="pt"))
    batch.pop("token_type_ids") if family == "mpnet" else None
    taps = EncoderTaps(model, hidden={0, 1, 2}, attention={1, 2})
    with torch.no_grad():
        model(**batch)
    got = taps.take()
    assert taps.take().hidden == {}  # taken: the next forward starts empty
    ref = _eager_outputs(model, batch)
    for i in range(3):
        torch.testing.assert_close(got.hidden[i], ref.hidden_states[i])
    pad = ~batch["attention_mask"].bool()[:, None, None, :]
    for i in (1, 2):  # softmax of the tapped scores (+ MPNet's position bias) with the mask = the model's own attention
        probs = torch.softmax(got.scores(i).masked_fill(pad, -1e9), -1)
        torch.testing.assert_close(probs, ref.attentions[i - 1], atol=1e-6, rtol=1e-5)
    assert (got.position_bias is not None) == (family == "mpnet")
    taps.remove()
    taps.take()
    with torch.no_grad():
        model(**batch)
    assert taps.take().hidden == {}


def test_taps_refuse_a_layer_the_encoder_lacks(tiny_bert):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert)
    with pytest.raises(ValueError, match="layer 3 is not in this 2-layer encoder"):
        EncoderTaps(model, hidden={3}, attention=set())
    with pytest.raises(ValueError, match="layer 0"):
        EncoderTaps(model, hidden=set(), attention={0})


# ---- end to end on the tiny teacher ---------------------------------------------------------------------------


def _cfg(mat, out, **kw):
    # a 2-layer, 16-wide student of the 32-wide tiny teacher: cross-width projections
    base = dict(materials=str(mat), output_dir=str(out), arch="transformer", epochs=2, batch_size=16, save_steps=4,
                log_every=2, device="cpu", lr=1e-3, patience=0,
                options={"layers": 2, "hidden": 16, "heads": 2, "intermediate": 32})
    base.update(kw)
    return StudentConfig(**base)


LAYER_WEIGHTS = dict(embedding_mse=1.0, hidden_mse=1.0, attention_mse=1.0, attention_kl=1.0, value_kl=1.0, hidden_cosine=1.0)


def test_joint_layerwise_run_logs_every_term_and_trains_the_projections(sst2_run, tmp_path):
    res = run(_cfg(sst2_run["run_dir"], tmp_path / "joint", **LAYER_WEIGHTS))
    log = [json.loads(x) for x in (tmp_path / "joint" / "log.jsonl").read_text().splitlines()]
    steps = [e for e in log if e["event"] == "train"]
    assert steps and all(e["layer"] > 0 and all(e[k] > 0 for k in losses.LAYER_TERMS) for e in steps)
    first, last = steps[0], steps[-1]
    assert last["hidden_mse"] < first["hidden_mse"] and last["attention_kl"] < first["attention_kl"]
    from safetensors.torch import load_file

    proj = load_file(tmp_path / "joint" / "checkpoint" / "layer_kd.safetensors")
    assert sorted(proj) == [f"proj.{i}.{p}" for i in range(3) for p in ("bias", "weight")]  # W_e and W_h per layer
    assert proj["proj.1.weight"].shape == (32, 16)
    assert not any("proj" in k for k in load_file(tmp_path / "joint" / "model" / "model.safetensors"))  # training-only
    assert res["metrics"]["dev"]["accuracy"] >= 0.5


def test_two_stages_resume_inside_stage_one_exactly(sst2_run, tmp_path):
    """SIGKILLed inside stage 1 and resumed: the same stage-1 weights and final model as one go."""
    import dataclasses
    import signal
    import subprocess
    import sys

    from safetensors.torch import load_file
    from test_student import _SIGKILLED_RUN

    weights = dict(hidden_mse=1.0, attention_mse=1.0, embedding_mse=1.0)
    ref = run(_cfg(sst2_run["run_dir"], tmp_path / "ref", layer_epochs=2, **weights))
    assert ref["summary"]["stage1"]["epochs_run"] == 2 and "best_accuracy" in ref["summary"]
    log = [json.loads(x) for x in (tmp_path / "ref" / "log.jsonl").read_text().splitlines()]
    stage1 = [e for e in log if e["event"] == "train"][: 2 * 10 // 2]  # 10 steps/epoch logged every 2
    assert all(e["soft"] == 0 and e["layer"] > 0 for e in stage1)
    stage2 = [e for e in log if e["event"] == "train" and e["step"] > 0 and e["soft"] > 0]
    assert stage2 and all("layer" not in e for e in stage2)  # prediction stage: no teacher in the loop
    assert [(e["stage"], e["epochs"]) for e in log if e["event"] == "stage"] == [("intermediate", 2), ("prediction", 2)]

    cut = _cfg(sst2_run["run_dir"], tmp_path / "cut", layer_epochs=2, **weights)
    proc = subprocess.run([sys.executable, "-c", _SIGKILLED_RUN, json.dumps(dataclasses.asdict(cut)), str(10 + 6)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    state = json.loads((tmp_path / "cut" / "stage1" / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 1 and state["batch"] == 6  # the step-16 checkpoint
    res = run(dataclasses.replace(cut, resume=True))
    for folder in ("stage1/model", "model"):
        a, b = load_file(tmp_path / "ref" / folder / "model.safetensors"), load_file(tmp_path / "cut" / folder / "model.safetensors")
        for k in a:
            # a skipped or repeated step moves weights by ~lr (1e-3); float reassociation across processes by ~1e-6
            torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4)
    assert res["metrics"]["dev"] == ref["metrics"]["dev"]
    # resumed once more after the end of stage 1: stage 1 is loaded, not re-run
    again = run(dataclasses.replace(cut, output_dir=str(tmp_path / "cut"), overwrite=False, resume=True))
    assert again["metrics"]["dev"] == ref["metrics"]["dev"]


@pytest.mark.parametrize("kw,match", [
    (dict(arch="cnn", options={}, hidden_mse=1.0), "use --arch transformer"),
    (dict(layer_epochs=2), "--layer-epochs runs the layer-wise terms first"),
    (dict(attention_mse=1.0, options={"layers": 2, "hidden": 16, "heads": 4}), "student has 4 heads and the teacher 2"),
    (dict(value_kl=1.0, relation_heads=3), "--relation-heads 3 must divide both widths"),
    (dict(hidden_mse=1.0, layer_map="1:3"), "out of range"),
    (dict(hidden_mse=-1.0), "must be >= 0"),
])
def test_layerwise_refusals_write_nothing(sst2_run, tmp_path, kw, match):
    out = tmp_path / "bad"
    with pytest.raises(DistillInputError, match=match):
        run(_cfg(sst2_run["run_dir"], out, **kw))
    assert not out.exists()


def test_peer_textbrewer_general_distiller_runs_the_same_setup(sst2_run, tmp_path):
    """benchmarks.peer_layerwise on the tiny teacher: both frameworks train the same set-up one epoch
    and the results JSON holds both."""
    pytest.importorskip("textbrewer")
    from benchmarks.peer_layerwise import PeerConfig, run as peer

    out = peer(PeerConfig(sst2_run["run_dir"], epochs=1, lr=1e-3, layers=2, hidden=16, heads=2, intermediate=32,
                          output=str(tmp_path / "peer.json")))
    for name in ("distill", "textbrewer"):
        r = out["results"][name]
        assert len(r["epoch_seconds"]) == 1 and 0 <= r["dev_accuracy"] <= 1
    assert out["pairs"] == [(0, 0), (1, 1), (2, 2)] and json.loads((tmp_path / "peer.json").read_text())["time_ratio"] > 0


def test_layerwise_under_bf16_autocast_keeps_the_teacher_fp32(sst2_run, tmp_path):
    """A bf16 student (autocast) with the teacher in the loop: the teacher runs outside autocast, the
    terms are computed in fp32 and stay finite."""
    run(_cfg(sst2_run["run_dir"], tmp_path / "bf16", epochs=1, precision="bf16", hidden_mse=1.0, attention_kl=1.0, value_kl=1.0))
    log = [json.loads(x) for x in (tmp_path / "bf16" / "log.jsonl").read_text().splitlines()]
    steps = [e for e in log if e["event"] == "train"]
    assert steps and all(math.isfinite(e["layer"]) and e["layer"] > 0 for e in steps)
