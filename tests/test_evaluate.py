"""Evaluation: exact answers from fake sessions with hand-made outputs; the demo model's broken-head case and mAP."""

import types
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from quantlab.sessions import make_session
from quantlab.datasets import Labels, load_dataset
from quantlab.demo import load_card
from quantlab.description import DETECT, ModelDescription
from quantlab.evaluate import Sample, evaluate_models, labelled_samples, unlabelled_samples
from quantlab.preprocess import letterbox
from quantlab.quantize import quantize_model
from quantlab.recipes import resolve_recipe

INPUT_HW = (192, 320)
DEMO = ModelDescription(DETECT, {0: "circle", 1: "rectangle", 2: "triangle", 3: "star"})


@pytest.fixture(scope="module")
def dataset(demo_data):
    return load_dataset(demo_data)


@pytest.fixture(scope="module")
def sessions(tmp_path_factory, demo_model, calib_images):
    out = tmp_path_factory.mktemp("eval-models")
    built = {"fp32": demo_model}
    for name in ("auto", "ort-default"):
        recipe = resolve_recipe(name).replace(num_calib=32)
        # force: ort-default fails its self-check (its head is quantized); it is kept to be measured
        built[name] = quantize_model(demo_model, out / f"{name}.onnx", recipe, calib_images, force=True).output_path
    return {name: make_session(path) for name, path in built.items()}


@pytest.fixture(scope="module")
def results(sessions, dataset):
    return evaluate_models(sessions, labelled_samples(dataset, DEMO), INPUT_HW, dataset.names, DEMO, reference="fp32")


def test_fp32_map_matches_ultralytics_val_in_the_model_card(results):
    """Not slow: `results` is built for the broken-head test anyway."""
    card = load_card()["ultralytics_val"]
    assert results["fp32"].map.map50_95 == pytest.approx(card["map50_95"], abs=0.02)
    assert results["fp32"].map.map50 == pytest.approx(card["map50"], abs=0.02)


def test_the_broken_head_is_caught_by_parity_and_map(results):
    """onnxruntime's defaults quantize the head: one scale spans box pixels and class probabilities."""
    fp32, broken, good = results["fp32"], results["ort-default"], results["auto"]
    assert fp32.map.map50_95 - broken.map.map50_95 > 0.3
    assert broken.parity["output0"]["scores"]["cosine"] < 0.9
    assert broken.agreement < 0.5
    assert fp32.map.map50_95 - good.map.map50_95 < 0.01
    assert good.parity["output0"]["scores"]["cosine"] > 0.98 and good.agreement > 0.95


def test_unlabelled_images_give_agreement_but_no_map(sessions, calib_images):
    subset = {k: sessions[k] for k in ("fp32", "auto")}
    results = evaluate_models(subset, unlabelled_samples(calib_images[:20]), INPUT_HW,
                              DEMO.class_names, DEMO, reference="fp32")
    assert results["auto"].map is None and results["auto"].agreement > 0.9 and results["auto"].images == 20


# --- fake sessions: outputs built by hand, so every number has a known answer -------------------

FAKE_HW = (96, 160)
FAKE_NAMES = {0: "a", 1: "b", 2: "c"}
FAKE = ModelDescription(DETECT, FAKE_NAMES)


def _output(rows, anchors=20):
    """(1, 4+3, anchors) from (cx, cy, w, h, class, prob) rows in input pixels."""
    out = np.zeros((1, 7, anchors), np.float32)
    for i, (cx, cy, w, h, cls, prob) in enumerate(rows):
        out[0, :4, i] = (cx, cy, w, h)
        out[0, 4 + cls, i] = prob
    return out


# The reference model's view of the image. The two class-0 boxes overlap at IoU 0.67: both survive NMS
# at 0.7. The class-1 box scores 0.1: below predict's 0.25, so it is no object of the reference.
REFERENCE_ROWS = [(40, 40, 30, 30, 0, 0.9), (46, 40, 30, 30, 0, 0.8), (120, 60, 20, 20, 2, 0.6),
                  (120, 20, 10, 10, 1, 0.1)]


class FakeSession:
    """Logs each input tensor it is given and returns its fixed outputs."""

    def __init__(self, *outputs):
        self.outputs, self.inputs = list(outputs), []

    def get_inputs(self):
        return [types.SimpleNamespace(name="images")]

    def get_outputs(self):
        return [types.SimpleNamespace(name="output0")]

    def run(self, output_names, feed):
        assert output_names is None and list(feed) == ["images"]
        self.inputs.append(feed["images"])
        return self.outputs


def _fake_sessions():
    # every box 2 px to the right (IoU 0.88), and the reference's 0.1 box scored 0
    shifted = [(cx + 2, cy, w, h, cls, prob if prob > 0.25 else 0.0) for cx, cy, w, h, cls, prob in REFERENCE_ROWS]
    wrong_class = [(cx, cy, w, h, (cls + 1) % 3, prob) for cx, cy, w, h, cls, prob in REFERENCE_ROWS]
    return {"fp32": FakeSession(_output(REFERENCE_ROWS)), "close": FakeSession(_output(shifted)),
            "blind": FakeSession(_output(wrong_class))}


def _image():
    return np.random.default_rng(0).integers(0, 256, (*FAKE_HW, 3), dtype=np.uint8)


def test_every_model_is_compared_with_the_reference_not_with_itself():
    sessions = _fake_sessions()
    # labels: the first class-0 box, the class-2 box, and the class-1 box the reference scores only 0.1
    truth = Labels(np.array([[25, 25, 55, 55], [110, 50, 130, 70], [115, 15, 125, 25]], np.float32),
                   np.array([0, 2, 1]))
    samples = [Sample(Path("one.png"), _image(), truth), Sample(Path("two.png"), _image(), truth)]
    results = evaluate_models(sessions, samples, FAKE_HW, FAKE_NAMES, FAKE, reference="fp32")
    fp32, close, blind = results["fp32"], results["close"], results["blind"]
    # agreement: mAP50 against the reference's predict-default detections
    assert fp32.agreement == pytest.approx(1.0) and close.agreement == pytest.approx(1.0)
    assert blind.agreement == 0.0
    # parity against the reference's raw output: the blind model's scores sit in other channels
    assert fp32.parity["output0"]["scores"] == {"cosine": pytest.approx(1.0), "max_abs": 0.0, "mean_abs": 0.0}
    assert blind.parity["output0"]["scores"]["cosine"] == pytest.approx(0.0)
    assert blind.parity["output0"]["top1_agreement"] == 0.0 and close.parity["output0"]["top1_agreement"] == 1.0
    assert close.parity["output0"]["boxes"]["max_abs"] == pytest.approx(2.0)  # every cx moved 2 px
    # mAP against the labels, for each model on its own, with val's conf 0.001: the 0.1 box counts
    assert fp32.map.map50 == pytest.approx(1.0) and blind.map.map50 == 0.0
    assert close.map.map50 == pytest.approx(2 / 3)  # two of three classes found
    assert {r.images for r in results.values()} == {2}


def test_every_model_gets_the_same_letterboxed_tensor_once_per_image():
    sessions = _fake_sessions()
    image = _image()
    evaluate_models(sessions, [Sample(Path("one.png"), image, None)], FAKE_HW, FAKE_NAMES, FAKE, reference="fp32")
    expected, _ = letterbox(image, FAKE_HW)
    for session in sessions.values():
        assert len(session.inputs) == 1
        np.testing.assert_array_equal(session.inputs[0], expected)


def test_without_labels_or_reference_nothing_is_invented():
    sessions = _fake_sessions()
    unlabelled = evaluate_models(sessions, [Sample(Path("one.png"), _image(), None)], FAKE_HW, FAKE_NAMES, FAKE,
                                 reference="fp32")
    assert unlabelled["close"].map is None and unlabelled["close"].agreement == pytest.approx(1.0)
    alone = evaluate_models(sessions, [Sample(Path("one.png"), _image(), None)], FAKE_HW, FAKE_NAMES, FAKE)
    assert {(r.map, r.agreement, r.parity) for r in alone.values()} == {(None, None, None)}
    assert alone["fp32"].as_dict()["map50_95"] is None


def test_an_unknown_reference_is_named():
    with pytest.raises(ValueError, match="reference 'int8' is not one of the sessions: fp32, close, blind"):
        evaluate_models(_fake_sessions(), [], FAKE_HW, FAKE_NAMES, FAKE, reference="int8")


def test_a_model_agrees_exactly_with_itself_even_when_anchors_have_second_labels():
    """Agreement takes one label per box: the 0.45 second label of a class-0 box would otherwise outrank
    the true class-1 box (0.4) and cost class 1 half its AP."""
    output = _output([(40, 40, 30, 30, 0, 0.9), (120, 60, 20, 20, 1, 0.4)])
    output[0, 4 + 1, 0] = 0.45
    results = evaluate_models({"fp32": FakeSession(output)}, [Sample(Path("one.png"), _image(), None)],
                              FAKE_HW, FAKE_NAMES, FAKE, reference="fp32")
    assert results["fp32"].agreement == pytest.approx(1.0)


def test_serial_evaluation_streams_samples_one_at_a_time():
    """workers=1: each sample is evaluated before the next is read: memory holds one image, whatever the count."""
    session = FakeSession(_output(REFERENCE_ROWS))
    runs_when_read = []

    def samples():
        for i in range(5):
            runs_when_read.append(len(session.inputs))
            yield Sample(Path(f"{i}.png"), _image(), None)

    evaluate_models({"fp32": session}, samples(), FAKE_HW, FAKE_NAMES, FAKE, reference="fp32", workers=1)
    assert runs_when_read == [0, 1, 2, 3, 4]


def test_labelled_samples_read_each_image_when_it_is_reached(tmp_path):
    """An image changed on disk after the first sample was taken is read as it is now: nothing read ahead."""
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for stem, value in (("a", 10), ("b", 20)):
        cv2.imwrite(str(tmp_path / "images" / f"{stem}.png"), np.full((8, 8, 3), value, np.uint8))
        (tmp_path / "labels" / f"{stem}.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (tmp_path / "data.yaml").write_text(yaml.safe_dump({"val": "images", "names": ["a"]}))
    samples = labelled_samples(load_dataset(tmp_path / "data.yaml"), ModelDescription(DETECT, {0: "a"}))
    first = next(samples)
    cv2.imwrite(str(tmp_path / "images" / "b.png"), np.full((8, 8, 3), 99, np.uint8))
    second = next(samples)
    assert (first.image.max(), second.image.max()) == (10, 99)
    np.testing.assert_array_equal(second.labels.boxes, [[2, 2, 6, 6]])


# --- the other tasks, end to end through evaluate_models: outputs built to match the labels -------

def _segment_outputs():
    """One object: box (cx 120, cy 60, w 80, h 40) class 1, whose mask coefficient 0 selects a proto
    channel positive on proto rows 10..20, columns 20..40: input pixels rows 40..80, columns 80..160."""
    out = np.zeros((1, 4 + 3 + 32, 40), np.float32)
    out[0, :4, 0], out[0, 4 + 1, 0], out[0, 7, 0] = (120, 60, 80, 40), 0.9, 1.0
    protos = np.full((1, 32, 24, 40), -10.0, np.float32)
    protos[0, 0, 10:20, 20:40] = 10.0
    return out, protos


def _mask_labels(row_shift=0):
    mask = np.zeros((1, *FAKE_HW), bool)
    mask[0, 40 + row_shift:80 + row_shift, 80:160] = True
    return Labels(np.array([[80, 40 + row_shift, 160, 80 + row_shift]], np.float32), np.array([1]), masks=mask)


def test_segment_mask_map_is_one_for_the_labels_own_mask_and_less_for_a_shifted_one():
    description = ModelDescription("segment", FAKE_NAMES, 32)
    session = FakeSession(*_segment_outputs())
    exact, shifted = (evaluate_models({"m": session}, [Sample(Path("one.png"), _image(), labels)], FAKE_HW,
                                      FAKE_NAMES, description)["m"] for labels in (_mask_labels(), _mask_labels(8)))
    assert exact.metric == "segm" and exact.map.map50_95 == pytest.approx(1.0)
    assert exact.box_map.map50_95 == pytest.approx(1.0)
    # shifted 8 of 40 rows: mask IoU 32/48 = 0.67, counted at thresholds 0.50..0.65 of ten
    assert shifted.map.map50 == pytest.approx(1.0) and shifted.map.map50_95 == pytest.approx(0.4)


def test_pose_oks_map_is_one_for_the_labels_own_keypoints_and_falls_as_they_move():
    description = ModelDescription("pose", {0: "shape"}, 6, (2, 3))
    out = np.zeros((1, 4 + 1 + 6, 40), np.float32)
    out[0, :5, 0] = (80, 48, 60, 40, 0.9)
    out[0, 5:, 0] = (60, 40, 0.95, 100, 56, 0.95)
    boxes = np.array([[50, 28, 110, 68]], np.float32)

    def pose_map(moved):
        keypoints = np.array([[[60 + moved, 40, 2], [100 + moved, 56, 2]]], np.float32)
        labels = Labels(boxes, np.array([0]), keypoints=keypoints)
        result = evaluate_models({"m": FakeSession(out)}, [Sample(Path("one.png"), _image(), labels)], FAKE_HW,
                                 {0: "shape"}, description)["m"]
        return result.map.map50_95

    def expected(moved):
        """COCO's OKS with sigma 1/K = 0.5 (kappa 1) and area = box area x 0.53, then AP over its ten thresholds."""
        oks = np.exp(-moved ** 2 / (2 * 60 * 40 * 0.53 * (2 * 0.5) ** 2))
        return float(np.mean(np.linspace(0.5, 0.95, 10) <= oks + 1e-12))

    assert pose_map(0) == pytest.approx(1.0)
    for moved in (20, 40, 100):  # OKS 0.85, 0.53, 0.02
        assert pose_map(moved) == pytest.approx(expected(moved)), moved
    assert expected(20) > expected(40) > expected(100) == 0.0
