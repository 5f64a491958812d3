"""Each scorer against its reference's rules, on crafted outputs scored by hand (the reasoning is in the comments).

Columns: output, then the verdict of ``video-r1`` (Video-R1 eval_bench.py), ``official`` (the benchmark's own
scorer) and ``lenient``. ``None`` for official = left out of the denominator by the official scorer.
"""

from pathlib import Path

import pytest

from videoktr.eval.benchmarks import load_benchmark
from videoktr.eval.scorers import score_item
from videoktr.eval.scorers.base import mean_relative_accuracy

FIXTURES = Path(__file__).parents[1] / "fixtures" / "benchmarks"


def _item(bench, file, item_id):
    return {i.id: i for i in load_benchmark(bench, FIXTURES / file)}[item_id]


def _verdicts(item, output):
    out = {}
    for scorer in ("video-r1", "official", "lenient"):
        fields = score_item(item, output, scorer)
        out[scorer] = fields["correct"] if fields["counted"] else None
    return out["video-r1"], out["official"], out["lenient"]


# Video-Holmes vh001_2, gold C; options A "The door opens" ... C "A phone rings". Official: last <answer> pair,
# then the first of "A "/"A:"/"[A" ... "F ", else the first capital A-F anywhere.
HOLMES = [
    ("<answer>C</answer>", True, True, True),
    ("C", True, True, True),  # no tags: every scorer reads the whole text
    ("<think>so C.</think><answer> C </answer>", True, True, True),  # spaces inside the tags are dropped
    ("<answer>C.</answer>", False, True, True),  # Video-R1: "C." != "C"
    ("<answer>(C)</answer>", False, True, True),
    (
        "<answer>C) A phone rings</answer>",
        False,
        False,
        True,
    ),  # Holmes: "A " found first -> A (known misread)
    ("<answer>The answer is C</answer>", False, True, True),  # Holmes: no "A " (answer is lower case) -> C
    ("<answer>Option C</answer>", False, True, True),
    (
        "<answer>B</answer><answer>C</answer>",
        False,
        True,
        True,
    ),  # Video-R1 reads the first pair, others the last
    ("<answer>C</answer><answer>B</answer>", True, False, False),
    ("", False, False, False),
    ("<answer>c</answer>", False, False, False),  # lower case: no rule reads it
    (
        "<answer>A phone rings</answer>",
        False,
        False,
        False,
    ),  # option text: Holmes and lenient read the article A
    ("<answer>Both C and D</answer>", False, True, False),  # Holmes: "C " before "D " in its A-F order
    ("<answer></answer>C", False, False, False),  # empty pair: Video-R1 falls back to the whole (tagged) text
]


@pytest.mark.parametrize("output, r1, official, lenient", HOLMES)
def test_video_holmes(output, r1, official, lenient):
    assert _verdicts(_item("video-holmes", "video_holmes_official.json", "vh001_2"), output) == (
        r1,
        official,
        lenient,
    )


# Video-MME 001-1, gold C. Official: extract_characters_regex on the answer (first pair) - first capital A-D
# anywhere; "" (nothing found, or > 10 words without A-D) is dropped from the denominator (None).
VIDEOMME = [
    ("<answer>C</answer>", True, True, True),
    ("<answer>(C)</answer>", False, True, True),
    ("<answer>C. Berries.</answer>", False, True, True),
    ("<answer>The answer is C</answer>", False, True, True),  # the prefix is removed, then C
    ("Answer: C", False, False, True),  # no tags: the "A" of "Answer" is the first capital A-D (misread)
    ("<answer>Based on the video, C</answer>", False, False, False),  # "B" of "Based"
    ("<answer>none of the above</answer>", False, None, False),  # no capital A-D: dropped
    ("", False, None, False),
    ("<answer>c</answer>", False, None, False),
    ("the man is clearly walking to the shop near the house today", False, None, False),  # > 10 words, no A-D
    (
        "<answer>D</answer><answer>C</answer>",
        False,
        False,
        True,
    ),  # official reads the first pair, lenient the last
]


@pytest.mark.parametrize("output, r1, official, lenient", VIDEOMME)
def test_videomme(output, r1, official, lenient):
    assert _verdicts(_item("videomme", "videomme.json", "001-1"), output) == (r1, official, lenient)


# TempCompass multi-choice, gold "B. moving from left to right". Official (eval_multi-choice.py, no LLM):
# equal to the answer string, or a bare A-D, or starting "X." / "X)"; anything else is wrong.
TC_MC = [
    ("B", True, True, True),
    ("<answer>B</answer>", True, True, True),
    ("B. moving from left to right", False, True, True),
    ("B.", False, True, True),
    ("B) moving from left to right", False, True, True),
    ("(B)", False, False, True),
    ("The answer is B", False, False, True),
    ("b", False, False, False),
    ("moving from left to right", False, False, False),
    ("", False, False, False),
]


@pytest.mark.parametrize("output, r1, official, lenient", TC_MC)
def test_tempcompass_multi_choice(output, r1, official, lenient):
    item = _item("tempcompass", "tempcompass/multi-choice.json", "1034419625/direction/multi-choice/0")
    assert _verdicts(item, output) == (r1, official, lenient)


# TempCompass yes/no (eval_yes_no.py): the lower-cased response starts with "yes" / "no". Video-R1 has no rule
# for this format (scored 0, flagged no_rule).
TC_YES_NO = [
    ("0", "yes", False, True, True),
    ("0", "Yes.", False, True, True),
    ("0", "<answer>yes</answer>", False, True, True),
    ("0", "No.", False, False, False),
    ("0", "The man is dunking, so yes", False, False, False),
    ("0", "", False, False, False),
    ("1", "no", False, True, True),  # gold no
    ("1", "Not sure", False, True, False),  # "not sure" starts with "no" (official misread)
]


@pytest.mark.parametrize("index, output, r1, official, lenient", TC_YES_NO)
def test_tempcompass_yes_no(index, output, r1, official, lenient):
    item = _item("tempcompass", "tempcompass/yes_no.json", f"1034419625/action/yes_no/{index}")
    assert _verdicts(item, output) == (r1, official, lenient)
    assert score_item(item, output, "video-r1")["no_rule"]


# TempCompass caption matching (eval_caption_matching.py eval_rule): the response equals an option line, an option
# sentence (also after "X) "), or a label with full stops removed. Item 1: gold "Caption A: A man is dunking a
# basketball." vs "Caption B: The man is shooting a basketball."; item 0 uses "Option 1/2", gold Option 2.
TC_CAPTION = [
    ("1", "Caption A", False, True, True),
    ("1", "Caption A.", False, True, True),
    ("1", "Caption A: A man is dunking a basketball.", False, True, True),
    (
        "1",
        "A man is dunking a basketball.",
        False,
        True,
        True,
    ),  # the sentence itself (lenient: not the article)
    ("1", "A", False, False, True),  # a bare letter is not a label of this format
    ("1", "Sentence A: A man is dunking a basketball.", False, False, True),  # wrong label word: unmatched
    ("1", "B) The man is shooting a basketball.", False, False, False),
    ("1", "", False, False, False),
    ("0", "Option 2", False, True, True),
    ("0", "2", False, False, True),
]


@pytest.mark.parametrize("index, output, r1, official, lenient", TC_CAPTION)
def test_tempcompass_caption_matching(index, output, r1, official, lenient):
    item = _item(
        "tempcompass", "tempcompass/caption_matching.json", f"1034419625/action/caption_matching/{index}"
    )
    assert _verdicts(item, output) == (r1, official, lenient)


# VideoMMMU test_Art_Theory_12 (options Baroque, Cubism, Impressionism, Surrealism; gold C): lmms-eval's
# parse_videommmu_multi_choice_response; an empty response is "API Error" and dropped.
VIDEOMMMU_MC = [
    ("C", True, True, True),
    ("<answer>C.</answer>", False, True, True),
    ("(C)", False, True, True),
    ("The answer is C", False, True, True),  # " C " is the only "X " candidate
    ("Option C: Impressionism", False, True, True),
    ("I think it is Impressionism because the brushwork", False, True, False),  # > 5 words: option text
    ("B, C", False, True, False),  # "B," is no candidate, "C " is
    ("D. Surrealism, not C", False, False, False),  # "D." wins (period candidates first)
    ("c", False, False, False),
    ("", False, None, False),
]


@pytest.mark.parametrize("output, r1, official, lenient", VIDEOMMMU_MC)
def test_videommmu_multiple_choice(output, r1, official, lenient):
    item = _item("videommmu", "videommmu_adaptation.json", "test_Art_Theory_12")
    assert _verdicts(item, output) == (r1, official, lenient)


# VideoMMMU test_Math_3, open, gold "12": Video-R1's numerical rule vs lmms-eval's parse_open_response/eval_open
# (numbers rounded to 2 decimals, numbers inside sentences read).
VIDEOMMMU_OPEN = [
    ("<answer>12</answer>", True, True, True),
    ("<answer>12.0</answer>", False, True, False),  # Video-R1: a decimal point on one side only
    ("<answer>The derivative is 12</answer>", False, True, False),
    ("<answer>12 meters</answer>", False, True, False),  # numbers with units
    ("<answer>13</answer>", False, False, False),
    ("<answer>twelve</answer>", False, False, False),
    ("", False, None, False),  # lmms-eval drops empty open answers
]


@pytest.mark.parametrize("output, r1, official, lenient", VIDEOMMMU_OPEN)
def test_videommmu_open(output, r1, official, lenient):
    item = _item("videommmu", "videommmu_adaptation.json", "test_Math_3")
    assert _verdicts(item, output) == (r1, official, lenient)


# MMVU 0a1b (A Nucleus, B Mitochondrion, C Ribosome, D Golgi apparatus, E Lysosome; gold B): lmms-eval's
# evaluate_with_rule_based accepts the gold letter as a word anywhere, or the gold option's text.
MMVU = [
    ("B", True, True, True),
    ("(B)", False, True, True),
    ("The answer is B", False, True, True),
    ("a mitochondrion", False, True, False),  # first letter "a" -> A (wrong), then the option text is found
    ("It is a nucleus, not B", False, True, False),  # B as a word anywhere counts (misread)
    ("Both mitochondria", False, False, False),
    ("A", False, False, False),
    ("", False, False, False),
]


@pytest.mark.parametrize("output, r1, official, lenient", MMVU)
def test_mmvu(output, r1, official, lenient):
    assert _verdicts(_item("mmvu", "mmvu_validation.json", "0a1b"), output) == (r1, official, lenient)


def test_mmvu_subject_outside_lmms_eval_map_is_not_counted(tmp_path):
    import json

    rows = json.loads((FIXTURES / "mmvu_validation.json").read_text())
    rows[0]["video_path"] = "videos/Oceanography/0a1b.mp4"
    path = tmp_path / "mmvu.json"
    path.write_text(json.dumps(rows))
    item = _item("mmvu", path, "0a1b")
    assert item.categories == {"subject": "Oceanography", "discipline": "unknown"}
    assert not score_item(item, "B", "official")["counted"] and score_item(item, "B", "video-r1")["counted"]


# Video-R1 numerical (synthetic syn-1, gold 3) and regression exactness
NUMERICAL = [
    ("<answer>3</answer>", True, True, True),
    ("<answer>3.0</answer>", False, False, False),  # the decimal-point rule
    ("<answer>3 squares</answer>", False, False, False),
    ("<answer> 3 </answer>", True, True, True),
]


@pytest.mark.parametrize("output, r1, official, lenient", NUMERICAL)
def test_video_r1_numerical(output, r1, official, lenient):
    assert _verdicts(_item("video-r1", "video_r1_synthetic.jsonl", "syn-1"), output) == (
        r1,
        official,
        lenient,
    )


@pytest.mark.parametrize(
    "pred, gold, expected",
    [
        (10.0, 10.0, 1.0),  # exact -> exact 1.0, not 0.9999999996
        (0.0, 0.0, 1.0),  # gold 0, exact: 0 / (0 + 1e-8) = 0 < every 1 - t
        (0.1, 0.0, 0.0),  # gold 0, anything else: 1e7 relative error
        (9.6, 10.0, 1.0),  # relative error 0.04 < 0.05 = 1 - 0.95
        (
            12.5,
            10.0,
            0.5,
        ),  # 0.25 < 1 - t for t = 0.50, 0.55, 0.60, 0.65, 0.70 (0.25 < 0.30), not 0.75 -> 5/10
    ],
)
def test_mean_relative_accuracy(pred, gold, expected):
    assert mean_relative_accuracy(pred, gold) == expected


def test_regression_exact_answer_is_correct():
    from videoktr.eval.benchmarks import BenchItem

    item = BenchItem("r", "?", None, "0", "regression", "v.mp4", {}, "video-r1")
    for scorer in ("video-r1", "official", "lenient"):
        fields = score_item(item, "<answer>0</answer>", scorer)
        assert fields["correct"] and fields["score"] == 1.0 and fields["metric"] == "mra"


def test_registries_list_what_can_be_chosen():
    from videoktr.eval.scorers import OFFICIAL, SCORERS
    from videoktr.eval.scorers.video_r1 import VIDEO_R1_RULES

    assert SCORERS.names() == ["lenient", "official", "tw-grpo", "video-r1"]
    assert OFFICIAL.names() == [
        "clevrer", "mmvu", "nextgqa", "tempcompass", "video-holmes", "video-r1", "videomme", "videommmu"
    ]  # fmt: skip
    assert VIDEO_R1_RULES.names() == ["multiple choice", "numerical", "regression"]


def test_benchmark_prompt_of_video_holmes():
    from videoktr.eval.runner import question_text

    item = _item("video-holmes", "video_holmes_official.json", "vh001_2")
    prompt = question_text(item, "benchmark")
    assert prompt.startswith("Based on the given video, reason and answer the single-choice question.")
    assert "The options are: A: The door opens, B: The light goes out, C: A phone rings" in prompt
    assert "Options:\nA. The door opens" in question_text(item, "video-r1")
