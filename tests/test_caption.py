"""``rnnkit caption`` on generated images (coloured shapes with generated captions): learning,
attention, beam search, encoder weights, the report, and every bad input through the CLI."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

import rnnkit.apps.caption  # noqa: E402, F401  (registers the application)
from rnnkit.apps.runner import load  # noqa: E402
from rnnkit.cli.main import main  # noqa: E402
from rnnkit.models.captioner import Captioner, CaptionerConfig  # noqa: E402
from rnnkit.models.decoding import beam_search, greedy  # noqa: E402

QUIET = ["--no-progress", "--no-tensorboard", "--no-plot", "--threads", "1"]
COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220)}
KINDS = (("red", "square"), ("blue", "circle"))  # as the issue: red squares, blue circles
SMALL = ["--image-size", "32", "--crop", "28", "--encoder-channels", "8,16",
         "--encoder-blocks", "1,1", "--embedding-size", "16", "--hidden-size", "32",
         "--attention-size", "16", "--dropout", "0.1", "--min-freq", "1"]


def _shape(colour: str, shape: str, size_word: str, rng: random.Random,
           size: int = 32) -> Image.Image:
    """A white image with one filled shape of random place (small or large)."""
    image = Image.new("RGB", (size, size), (255, 255, 255))
    pixels = np.asarray(image).copy()
    radius = rng.randint(3, 5) if size_word == "small" else rng.randint(9, 12)
    cy, cx = rng.randint(radius, size - radius - 1), rng.randint(radius, size - radius - 1)
    yy, xx = np.mgrid[:size, :size]
    if shape == "square":
        inside = (abs(yy - cy) <= radius) & (abs(xx - cx) <= radius)
    else:
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2
    pixels[inside] = COLOURS[colour]
    return Image.fromarray(pixels)


def _dataset(directory: Path, count: int = 96, seed: int = 0) -> dict[str, Path]:
    """Images, a captions file (2 captions each) and train/valid/test split files."""
    rng = random.Random(seed)
    images = directory / "images"
    images.mkdir(parents=True)
    lines, names = [], []
    for k in range(count):
        (colour, shape), size = rng.choice(KINDS), rng.choice(("small", "large"))
        name = f"img{k:03d}.png"
        _shape(colour, shape, size, rng).save(images / name)
        names.append(name)
        lines += [f"{name}#0\ta {size} {colour} {shape} on a white background .",
                  f"{name}#1\tA {size.title()} {colour} {shape} on white"]
    captions = directory / "captions.txt"
    captions.write_text("\n".join(lines) + "\n")
    splits = {}
    a, b = count * 2 // 3, count * 5 // 6
    for part, rows in (("train", names[:a]), ("valid", names[a:b]), ("test", names[b:])):
        splits[part] = directory / f"{part}.txt"
        splits[part].write_text("\n".join(rows) + "\n")
    return {"images": images, "captions": captions, **splits}


def _train_args(data: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["caption", "train", "--images", str(data["images"]), "--captions",
            str(data["captions"]), "--train", str(data["train"]), "--valid",
            str(data["valid"]), "--test", str(data["test"]), "--out", str(out),
            *SMALL, *QUIET, *extra]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread for this file (two busy-wait on a loaded 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    directory = tmp_path_factory.mktemp("shapes")
    data = _dataset(directory)
    out = directory / "run"
    assert main(_train_args(data, out, "--batch-size", "8", "--max-epochs", "10", "--lr",
                            "1e-2", "--eval-every", "0", "--eval-images", "0")) == 0
    return data, out


def test_model_learns_size_colour_and_shape(shapes, capsys):
    data, out = shapes
    capsys.readouterr()
    assert main(["caption", "eval", "--checkpoint", str(out), "--split", "test", "--json",
                 "--threads", "1", "--baselines"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["images"] == 16
    assert metrics["bleu4"] > 60, metrics
    assert metrics["table"]["nearest"]["bleu1"] > 0
    capsys.readouterr()
    test_images = [data["images"] / n for n in data["test"].read_text().split()]
    assert main(["caption", "predict", "--checkpoint", str(out), *map(str, test_images[:-1]),
                 "--beam-size", "2", "--images", str(test_images[-1])]) == 0  # bare and flag
    lines = capsys.readouterr().out.strip().split("\n")
    truth = {}
    for line in data["captions"].read_text().splitlines():
        key, text = line.split("\t")
        truth[key.split("#")[0]] = " ".join(text.lower().split()[:4])
    right = sum(c.startswith(truth[Path(p).name] + " ")
                for p, c in (line.split("\t") for line in lines))
    assert right >= 14, lines


def test_attention_sums_to_one_and_beam_one_is_greedy(shapes):
    _, out = shapes
    loaded = load("caption", out, "cpu")
    model = loaded.model
    images = torch.randn(3, 3, 28, 28)
    regions = model.features(images)
    assert regions.shape == (3, 49, 16)  # a 7 x 7 grid of 16 channels
    memory, state = model.encode(regions)
    tokens = torch.tensor([[2, 5, 6], [2, 4, 7], [2, 6, 6]])
    logits, _, attention = model.decode(tokens, state, memory)
    assert logits.shape == (3, 3, len(loaded.vocab))
    assert attention.shape == (3, 3, 49)
    torch.testing.assert_close(attention.sum(-1), torch.ones(3, 3), rtol=0, atol=1e-6)
    assert bool((attention >= 0).all())
    lengths = torch.full((3,), 49)
    one = beam_search(model, regions, lengths, beam_size=1, max_len_a=0, max_len_b=8,
                      alpha=0.0, return_attention=True)
    best = greedy(model, regions, lengths, max_len_a=0, max_len_b=8, alpha=0.0,
                  return_attention=True)
    assert one.tokens == best.tokens
    torch.testing.assert_close(one.scores, best.scores)
    for a, b in zip(one.attention, best.attention, strict=True):
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(a.sum(-1), torch.ones(len(a)), rtol=0, atol=1e-6)


def test_teacher_forced_forward_matches_step_by_step():
    torch.manual_seed(0)
    model = Captioner(CaptionerConfig(vocab_size=11, channels=[8, 16], blocks=[1, 1],
                                      embedding_size=8, hidden_size=12, attention_size=6,
                                      dropout=0.0)).eval()
    images = torch.randn(2, 3, 28, 28)
    owner = torch.tensor([1, 0, 1])
    tokens = torch.tensor([[2, 5, 6, 7], [2, 4, 7, 0], [2, 9, 0, 0]])
    lengths = torch.tensor([4, 3, 2])
    with torch.no_grad():
        logits, attention = model(images, owner, tokens, lengths)
    for n in range(3):
        memory, state = model.encode(model.features(images[owner[n]][None]))
        alone, _, weights = model.decode(tokens[n:n + 1, : lengths[n]], state, memory)
        torch.testing.assert_close(logits[n, : lengths[n]], alone[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(attention[n, : lengths[n]], weights[0])
        assert float(attention[n, lengths[n]:].abs().sum()) == 0.0


def test_report_has_one_heat_map_per_word(shapes, tmp_path):
    data, out = shapes
    image = data["images"] / "img000.png"
    page = tmp_path / "page.html"
    assert main(["caption", "report", "--checkpoint", str(out), "--image", str(image),
                 "--output", str(page)]) == 0
    text = page.read_text()
    assert "Attention per word" in text and "data:image/png;base64," in text
    caption = text.split("<th>caption</th><td>")[1].split("</td>")[0]
    assert len(caption.split()) >= 3
    assert text.count("<td>row ") == len(caption.split()) + 1  # every word and <eos>
    inspected = tmp_path / "inspect.html"
    assert main(["inspect", "--checkpoint", str(out), "--text", str(image), "--out",
                 str(inspected)]) == 0
    assert "Attention per word" in inspected.read_text()


def test_alpha_and_grayscale_images_are_captioned(shapes, tmp_path, capsys):
    _, out = shapes
    rgba = Image.new("RGBA", (50, 40), (0, 0, 0, 0))
    rgba.paste((30, 60, 220, 255), (10, 10, 35, 30))
    rgba.save(tmp_path / "alpha.png")
    Image.new("L", (20, 20), 128).save(tmp_path / "gray.jpg")
    Image.new("P", (20, 20), 3).save(tmp_path / "palette.gif")
    capsys.readouterr()
    assert main(["caption", "predict", "--checkpoint", str(out), "--images", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().split("\n")
    assert len(lines) == 3 and all(len(line.split("\t")[1].split()) >= 1 for line in lines)
    alpha = [line for line in lines if "alpha.png" in line][0]
    assert "blue" in alpha  # transparent pixels became white, not black


def test_encoder_weights_load_from_a_file(tmp_path):
    data = _dataset(tmp_path / "d", count=24)
    torch.manual_seed(5)
    donor = Captioner(CaptionerConfig(vocab_size=5, channels=[8, 16], blocks=[1, 1]))
    weights = tmp_path / "encoder.pt"
    state = {k: v for k, v in donor.encoder.state_dict().items()}
    state["fc.weight"] = torch.zeros(3, 16)  # a classifier head, as torchvision's: ignored
    torch.save(state, weights)
    out = tmp_path / "run"
    assert main(_train_args({**data, "valid": data["test"]}, out, "--encoder-weights",
                            str(weights), "--max-steps", "1", "--lr", "1e-9",
                            "--eval-images", "0")) == 0
    from safetensors.torch import load_file

    saved = load_file(str(out / "last" / "model.safetensors"))
    conv = donor.encoder.state_dict()["conv1.weight"]
    torch.testing.assert_close(saved["encoder.conv1.weight"], conv, rtol=0, atol=1e-6)
    assert not torch.allclose(conv, Captioner(CaptionerConfig(
        vocab_size=5, channels=[8, 16], blocks=[1, 1])).encoder.conv1.weight)


def _corrupt(path: Path) -> None:
    path.write_bytes(b"\x89PNG\r\n\x1a\n not really an image")


@pytest.mark.parametrize("kind", ["missing", "corrupt", "unknown", "empty", "no_tab",
                                  "weights"])
def test_bad_input_names_file_and_line(kind, tmp_path, capsys):
    data = _dataset(tmp_path / "d", count=24)
    extra: list[str] = []
    if kind == "missing":
        (data["images"] / "img003.png").unlink()
        expected = f"{data['captions']}:7: names image img003.png, which is not in"
    elif kind == "corrupt":
        _corrupt(data["images"] / "img002.png")
        expected = f"{data['captions']}:5: {data['images'] / 'img002.png'}: not a readable image"
    elif kind == "unknown":
        with data["captions"].open("a") as handle:
            handle.write("ghost.jpg#0\ta ghost\n")
        data = {**data, "train": None}
        expected = f"{data['captions']}:49: names image ghost.jpg, which is not in"
    elif kind == "empty":
        data["captions"].write_text("")
        expected = f"{data['captions']}: no captions (the file is empty)"
    elif kind == "no_tab":
        data["captions"].write_text("img000.png#0 a red square\n")
        expected = f"{data['captions']}:1: expected IMAGE#N<TAB>caption"
    else:
        torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "w.pt")
        extra = ["--encoder-weights", str(tmp_path / "w.pt")]
        expected = f"--encoder-weights {tmp_path / 'w.pt'}: no tensor 'bn1.weight'"
    args = _train_args({**data, "valid": data["test"]}, tmp_path / "run", "--max-steps", "1",
                       *extra)
    if data["train"] is None:
        i = args.index("--train")
        del args[i:i + 2]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert expected in err, err
    assert not (tmp_path / "run" / "last").exists()


def test_skip_bad_reports_and_leaves_out_a_corrupt_image(tmp_path, capsys):
    data = _dataset(tmp_path / "d", count=24)
    _corrupt(data["images"] / "img002.png")
    capsys.readouterr()
    assert main(_train_args({**data, "valid": data["test"]}, tmp_path / "run", "--max-steps",
                            "1", "--skip-bad", "--eval-images", "0")) == 0
    err = capsys.readouterr().err
    assert f"skipped: {data['captions']}:5: " in err and "img002.png" in err


@pytest.mark.parametrize("kind", ["missing", "corrupt"])
def test_predict_names_a_bad_image(kind, shapes, tmp_path, capsys):
    _, out = shapes
    path = tmp_path / "x.png"
    if kind == "corrupt":
        _corrupt(path)
    capsys.readouterr()
    assert main(["caption", "predict", "--checkpoint", str(out), "--images", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and "Traceback" not in err


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_encoder_and_decoder_step(shapes, tmp_path, capsys, fmt):
    """rnnkit export writes the encoder and one decoder step; run at another batch size they
    give the rnnkit model's regions, first state, logits and attention."""
    from rnnkit.deploy import export as ex
    from rnnkit.models.seq2seq import Memory

    if fmt == "onnx":
        ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (test extra)")
    _, out = shapes
    output = tmp_path / ("cap.onnx" if fmt == "onnx" else "cap.pt")
    capsys.readouterr()
    assert main(["export", "--checkpoint", str(out), "--format", fmt, "--output",
                 str(output)]) == 0
    assert "largest difference from rnnkit" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "cap.json").read_text())
    graphs = {g["name"]: g for g in manifest["graphs"]}
    assert set(graphs) == {"encoder", "decoder_step"}
    _, loaded, _ = ex.open_application(out, "cpu")
    model = loaded.model.eval()
    crop = loaded.config.crop
    images = torch.rand(3, 3, crop, crop, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        regions = model.features(images)
        memory, (h, c) = model.encode(regions)
        token = torch.tensor([loaded.vocab.bos_id, 5, 6])
        mask = torch.ones(regions.shape[:2], dtype=torch.bool)
        logits, (h1, c1), weights = model.step(token, (h, c), Memory(regions, memory.keys, mask))

    def run(name, *inputs):
        file = tmp_path / graphs[name]["file"]
        if fmt == "torchscript":
            return torch.jit.load(str(file))(*inputs)
        session = ex.onnx_session(ort, file)
        feed = {n: t.numpy() for n, t in zip(graphs[name]["inputs"], inputs, strict=True)}
        return [torch.from_numpy(a) for a in session.run(graphs[name]["outputs"], feed)]

    tol = {"rtol": 1e-4, "atol": 1e-5}
    for got, want in zip(run("encoder", images), (regions, memory.keys, h, c), strict=True):
        torch.testing.assert_close(got, want, **tol)
    step = run("decoder_step", token, h, c, regions, memory.keys)
    for got, want in zip(step, (logits, h1, c1, weights), strict=True):
        torch.testing.assert_close(got, want, **tol)


def test_serve_captions_an_uploaded_image(shapes, capsys):
    """An image sent to rnnkit serve is captioned as rnnkit caption predict captions the file."""
    import base64

    httpx = pytest.importorskip("httpx", reason="httpx not installed (test extra)")
    pytest.importorskip("starlette", reason="starlette not installed (serve extra)")
    from rnnkit.deploy import server as srv
    from test_serve import running

    data, out = shapes
    image = data["images"] / data["test"].read_text().split()[0]
    capsys.readouterr()
    assert main(["caption", "predict", "--checkpoint", str(out), str(image)]) == 0
    expected = capsys.readouterr().out.split("\t")[1]
    models = srv.load_models(srv.ServeConfig([str(out)], ["cap"]))
    with running(models) as base:
        described = {m["name"]: m for m in httpx.get(f"{base}/v1/models").json()["models"]}
        assert described["cap"]["routes"]["predict"]["uploads"] == {"images": ".img"}
        response = httpx.post(f"{base}/v1/cap/predict", timeout=60, json={
            "uploads": {"images": base64.b64encode(image.read_bytes()).decode()}})
    assert response.status_code == 200, response.text
    assert response.json()["output"].split("\t")[1] == expected


def test_ensemble_decodes_with_the_mean_of_the_members_distributions(shapes):
    import copy

    from rnnkit.models.captioner import CaptionEnsemble

    _, out = shapes
    model = load("caption", out, "cpu").model.eval()
    other = copy.deepcopy(model)
    with torch.no_grad():
        for parameter in other.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    ensemble = CaptionEnsemble([model, other]).eval()
    images = torch.randn(2, 3, 28, 28)
    regions = ensemble.features(images)
    assert regions.shape == (2, 49, 32)  # both members' 16 channels side by side
    memory, state = ensemble.encode(regions)
    tokens = torch.tensor([[2, 5], [2, 4]])
    mixed, _, attention = ensemble.decode(tokens, state, memory)
    with torch.no_grad():
        probs = []
        weights = []
        for member in (model, other):
            m, s = member.encode(member.features(images))
            logits, _, att = member.decode(tokens, s, m)
            probs.append(torch.softmax(logits, -1))
            weights.append(att)
    torch.testing.assert_close(mixed.exp(), (probs[0] + probs[1]) / 2, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(attention, (weights[0] + weights[1]) / 2)
    lengths = torch.full((2,), 49)
    found = beam_search(ensemble, regions, lengths, beam_size=3, max_len_a=0, max_len_b=8,
                        alpha=0.0)
    assert all(len(t) >= 1 for t in found.tokens)
    # a model and its copy: the ensemble is the model
    twins = CaptionEnsemble([model, copy.deepcopy(model)])
    single = beam_search(model, model.features(images), lengths, beam_size=3, max_len_a=0,
                         max_len_b=8, alpha=0.0)
    twin = beam_search(twins, twins.features(images), lengths, beam_size=3, max_len_a=0,
                       max_len_b=8, alpha=0.0)
    assert twin.tokens == single.tokens
    torch.testing.assert_close(twin.log_probs, single.log_probs, rtol=1e-5, atol=1e-5)


def test_ensemble_from_the_command_line(shapes, tmp_path, capsys):
    import shutil

    data, out = shapes
    capsys.readouterr()
    scores = []
    for given in ([out], [out, out]):
        flags = [part for run in given for part in ("--checkpoint", str(run))]
        assert main(["caption", "eval", *flags, "--split", "test", "--json", "--threads", "1",
                     "--baselines"]) == 0
        scores.append(json.loads(capsys.readouterr().out))
    assert scores[1]["bleu4"] == pytest.approx(scores[0]["bleu4"], abs=1e-6)
    assert scores[1]["table"]["nearest"] == scores[0]["table"]["nearest"]
    image = data["images"] / "img000.png"
    assert main(["caption", "report", "--checkpoint", str(out), "--checkpoint", str(out),
                 "--image", str(image), "--output", str(tmp_path / "r.html")]) == 2
    assert "give one --checkpoint" in capsys.readouterr().err
    other = tmp_path / "other"
    shutil.copytree(out, other)
    for vocab in other.rglob("vocab.json"):
        saved = json.loads(vocab.read_text())
        saved["tokens"][-1] = "zebra-" + saved["tokens"][-1]
        vocab.write_text(json.dumps(saved))
    assert main(["caption", "eval", "--checkpoint", str(out), "--checkpoint", str(other),
                 "--split", "test"]) == 2
    assert "its vocabulary (vocab.json) differs" in capsys.readouterr().err
