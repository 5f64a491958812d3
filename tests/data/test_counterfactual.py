import json

import numpy as np
import pytest

from videoktr.data.counterfactual import (
    SLOT_READERS,
    label_completion,
    label_completions,
    scene_slot_labels,
    slot_dependencies,
    slot_roles,
)
from videoktr.data.synthetic import _LETTERS, QUESTION_KINDS, Scene, Square, SyntheticConfig, make_synthetic
from videoktr.errors import UserError

ALL = tuple(QUESTION_KINDS.names())


def scenes(kind: str, n: int, seed: int = 3):
    spec = QUESTION_KINDS.get(kind)
    cfg = SyntheticConfig(num_frames=8, kinds=(kind,))
    rng = np.random.default_rng(seed)
    return [(spec.scene(rng, i % spec.n_answers, cfg), i % spec.n_answers) for i in range(n)]


@pytest.mark.parametrize("kind", ALL)
def test_readers_reproduce_the_generators_slots(kind):
    """Reading the slots off the squares gives back what the generator filled in, answer letter included."""
    for scene, answer in scenes(kind, 30):
        letter = scene.letters or _LETTERS[answer]
        assert SLOT_READERS[kind](scene.squares, scene.slots.get("x")) == {**scene.slots, "letter": letter}


@pytest.mark.parametrize("kind", ALL)
def test_slot_labels_do_not_depend_on_the_scene(kind):
    """Completions are labelled by slot role: every scene's own re-derivation must agree with it."""
    roles = slot_roles(kind)
    for scene, _ in scenes(kind, 40, seed=11):
        assert scene_slot_labels(kind, scene) == roles


def test_roles_by_hand():
    assert slot_roles("color") == {"c": "content", "letter": "content"}
    assert slot_roles("count") == {"n": "content", "noun": "content", "be": "content", "letter": "content"}
    # the colour that appears first changes when only the frame order changes: order, though it is a colour word
    assert slot_roles("first_color") == {"a": "order", "b": "order", "letter": "order"}
    assert slot_roles("direction") == {"c": "content", "d": "order", "letter": "order"}
    # the asked colour comes from the question: recolouring changes it, reordering does not
    roles = slot_roles("after")
    assert roles["x"] == "content" and roles["c2"] == roles["ans"] == "order"


def test_dependencies_of_a_hand_made_scene():
    # red in frames 0-3, green in frames 4-7: reversing the frames makes green first (order); recolouring changes
    # both colours (content); the question stays posed under both
    red = Square("red", 14, [(0, 0)] * 4 + [None] * 4)
    green = Square("green", 14, [None] * 4 + [(0, 30)] * 4)
    deps = slot_dependencies(
        "first_color", Scene([red, green], "Which color appears first?", {"a": "red", "b": "green"})
    )
    assert deps == {"a": (True, True), "b": (True, True), "letter": (True, True)}
    # a still square: no frame order changes its colour
    still = Square("blue", 14, [(0, 0)] * 8)
    assert slot_dependencies("color", Scene([still], "What color is the square?", {"c": "blue"})) == {
        "c": (False, True),
        "letter": (False, True),
    }


def test_label_completion_follows_the_template():
    text = "<think>Let me see. The green square comes after the red square, so red was first. So the answer is A.</think><answer>A</answer><|im_end|>"
    out = label_completion(text, ["color", "first_color"])
    assert out.status == "template" and out.kind == "first_color"
    words = [(text[a:b], lab) for a, b, lab in out.spans]
    assert words == [("green", "order"), ("red", "order"), ("red", "order"), ("A", "order"), ("A", "order")]
    # a wrong answer still follows the template: its words keep their roles
    wrong = text.replace("so red was", "so blue was")
    assert label_completion(wrong, ["first_color"]).status == "template"
    static = "<think>Okay, let me think. I see a blue square. So the answer is C.</think><answer>C</answer>"
    assert [(static[a:b], lab) for a, b, lab in label_completion(static, ["color", "first_color"]).spans] == [
        ("blue", "content"),
        ("C", "content"),
        ("C", "content"),
    ]


def test_off_template_completions_are_unlabelled_and_counted():
    good = "<think>Let me see. The square looks red. So the answer is A.</think><answer>A</answer>"
    truncated = good[:40]
    extra = good.replace("looks red", "looks very red")
    labelled, counts = label_completions([good, truncated, extra, ""], ["color"])
    assert [lt.status for lt in labelled] == ["template", "off_template", "off_template", "off_template"]
    assert counts == {"template": 1, "off_template": 3, "ambiguous": 0}
    assert labelled[1].spans == () and not labelled[1].labelled
    # the template of a kind that is not in the run does not label
    assert label_completion(good, ["first_color"]).status == "off_template"


def test_unknown_kind_is_refused():
    with pytest.raises(UserError, match="color"):
        label_completions(["x"], ["colour"])


def test_make_synthetic_writes_counterfactual_spans(tmp_path):
    paths = make_synthetic(tmp_path, n_train=7, n_test=2, seed=5, kinds=ALL)
    sft = json.loads(paths["train_sft"].read_text())
    for record in sft:
        spans = record["counterfactual_spans"]
        roles = slot_roles(record["question_kind"])
        assert spans and all(roles[s["slot"]] == s["label"] for s in spans)
        # the generator's own reasoning labels exactly like a completion of the same text
        labelled = label_completion(record["process"] + record["solution"], [record["question_kind"]])
        assert [(s["start"], s["end"], s["label"]) for s in spans] == list(labelled.spans[:-1])
    assert all("counterfactual_spans" not in r for r in json.loads(paths["train"].read_text()))
    assert all(r["counterfactual_spans"] for r in json.loads(paths["test"].read_text()))
