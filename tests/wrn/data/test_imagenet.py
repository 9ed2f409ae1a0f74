"""ImageNet's input: fb.resnet.torch's draws and pixel operations against transcriptions of the Lua,
the earlier torchvision pipeline reproduced pixel for pixel with colour off, the pil and tensor paths
making the same crops and flips, data-parallel shares, and resuming."""

import dataclasses
import io
import math
import random

import pytest
import torch
import torchvision.transforms as T
from torchvision.transforms.v2.functional import pil_to_tensor
from PIL import Image

from wrn.config import RunConfig, resolve, resolved_input_pipeline
from wrn.data.fake import write_fake_dataset
from wrn.data.imagenet import ImageNetPipeline, _Job, _PilLoader, _TensorLoader, crop_batch
from wrn.data.imagenet_augment import (FB_RESNET, PCA_EIGVAL, PCA_EIGVEC, BatchDraws, Box, Plan, finish_batch,
                                       lighting_shift)
from wrn.data.pipeline import derived_seed, epoch_permutation
from wrn.data.preprocess import IMAGENET_MEAN, IMAGENET_STD

N_TRAIN, N_TEST = 40, 20
CPU = torch.device("cpu")
# The largest pil-tensor difference after mean/std: one grey level (1/255/0.225 = 0.0174) for plain
# crops; fb's contrast and saturation can stretch a resampler's difference to a few levels.
PLAIN_TOLERANCE = 1.01 / 255 / min(IMAGENET_STD)
COLOUR_TOLERANCE = 6 / 255 / min(IMAGENET_STD)
MEAN_TOLERANCE = 0.1 / 255 / min(IMAGENET_STD)  # a tenth of a grey level on average


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_fake_dataset("imagenet", root, N_TRAIN, N_TEST, seed=0)
    return root


def imagenet(**overrides):
    return resolve(RunConfig(**{"dataset": "imagenet", "arch": "wrn50_2_bottleneck", "depth": 50, "k": 2,
                                "data_source": f"synthetic:{N_TRAIN}:{N_TEST}", "batch_size": 8,
                                "eval_batch_size": 6, "image_size": 24, **overrides}))


def pipeline(root, workers=0, rank=0, **overrides):
    return ImageNetPipeline(imagenet(**overrides), root, CPU, workers, rank=rank)


def collect(batches):
    return [(x.clone(), y.clone()) for x, y in batches]


def assert_same(a, b):
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def generator(seed):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------------
# fb.resnet.torch's draws
# ------------------------------------------------------------------------------------------------
def lua_random_sized_crop(rng: random.Random, height: int, width: int):
    """transforms.lua's RandomSizedCrop, line for line, on Python's RNG: (top, left, h, w) or None."""
    for _ in range(10):
        target_area = rng.uniform(0.08, 1.0) * height * width
        aspect_ratio = rng.uniform(3 / 4, 4 / 3)
        w = math.floor(math.sqrt(target_area * aspect_ratio) + 0.5)
        h = math.floor(math.sqrt(target_area / aspect_ratio) + 0.5)
        if rng.random() < 0.5:
            w, h = h, w
        if h <= height and w <= width:
            return rng.randint(0, height - h), rng.randint(0, width - w), h, w
    return None


def crop_statistics(boxes, height, width):
    found = [b for b in boxes if b is not None]
    return {"fallback": 1 - len(found) / len(boxes),
            "area": sum(h * w for _, _, h, w in found) / len(found) / (height * width),
            "wide": sum(w > h for _, _, h, w in found) / len(found),
            "centre_y": sum((t + h / 2) / height for t, _, h, _ in found) / len(found),
            "centre_x": sum((left + w / 2) / width for _, left, _, w in found) / len(found)}


@pytest.mark.parametrize("height, width", [(300, 400), (60, 400)])
def test_random_sized_crop_draws_as_the_lua_does(height, width):
    """Our boxes against a transcription of the Lua on another RNG: the same distribution (each
    statistic within about 4 standard errors of 3000 draws), every box inside the image."""
    ours = [FB_RESNET.draw(generator(s), height, width, hflip=True).crop for s in range(3000)]
    for b in ours:
        assert b is None or (0 <= b.top <= height - b.height and 0 <= b.left <= width - b.width)
    rng = random.Random(0)
    lua = [lua_random_sized_crop(rng, height, width) for _ in range(3000)]
    mine = crop_statistics([None if b is None else (b.top, b.left, b.height, b.width) for b in ours], height, width)
    theirs = crop_statistics(lua, height, width)
    for key in mine:
        assert abs(mine[key] - theirs[key]) < 0.035, (key, mine[key], theirs[key])
    assert (mine["fallback"] > 0.05) == (height == 60)  # a 3:20 strip often fits no box


def test_random_sized_crop_falls_back_to_scale_and_centre_crop():
    """A 10x1000 strip fits no box of 8% of its area and aspect 3/4..4/3: after 10 attempts,
    Scale(size) (the shorter side to size, the longer truncated) then CenterCrop with ceil offsets."""
    plan, draws = FB_RESNET.plan(10, 1000, 224, seed=3, hflip=True)
    assert draws.crop is None
    assert plan == Plan(None, (224, 22400), Box(0, math.ceil((22400 - 224) / 2), 224, 224))
    test_plan, none = FB_RESNET.plan(375, 500, 224, seed=None, hflip=True)
    assert none is None and test_plan == Plan(None, (256, 341), Box(16, 59, 224, 224))  # ceil(117 / 2)
    assert FB_RESNET.plan(256, 300, 224, None, True)[0].resize == (256, 300)  # Scale leaves a 256 side alone


def test_colour_and_flip_draws():
    draws = [FB_RESNET.draw(generator(s), 100, 120, hflip=True) for s in range(2000)]
    for d in draws:
        assert sorted(op for op, _ in d.jitter) == [0, 1, 2]
        assert all(0.6 <= alpha <= 1.4 for _, alpha in d.jitter)
    lighting = torch.tensor([d.lighting for d in draws])
    assert torch.allclose(lighting.std(0), torch.full((3,), 0.1, dtype=lighting.dtype), rtol=0.1)
    assert 0.45 < sum(d.flip for d in draws) / len(draws) < 0.55
    first = [d.jitter[0][0] for d in draws]
    assert all(0.28 < first.count(op) / len(first) < 0.39 for op in range(3))  # a uniform random order
    unflipped = FB_RESNET.draw(generator(7), 100, 120, hflip=False)
    assert not unflipped.flip and dataclasses.replace(FB_RESNET.draw(generator(7), 100, 120, True),
                                                      flip=False) == unflipped  # the flip is drawn last
    assert FB_RESNET.draw(generator(7), 100, 120, True) == FB_RESNET.draw(generator(7), 100, 120, True)


def test_lighting_adds_the_pca_shift_worked_by_hand():
    """Lighting(0.1) on a grey image with the jitter at alpha = 1: rgb_i = sum_j eigvec[i][j] alpha_j
    eigval_j, written out."""
    alphas = (0.1, -0.2, 0.05)
    rgb = [-0.5675 * 0.1 * 0.2175 + 0.7192 * -0.2 * 0.0188 + 0.4009 * 0.05 * 0.0045,
           -0.5808 * 0.1 * 0.2175 + -0.0045 * -0.2 * 0.0188 + -0.8140 * 0.05 * 0.0045,
           -0.5836 * 0.1 * 0.2175 + -0.6948 * -0.2 * 0.0188 + 0.4203 * 0.05 * 0.0045]
    shift = lighting_shift(torch.tensor([alphas], dtype=torch.float64))
    assert torch.allclose(shift, torch.tensor([rgb], dtype=torch.float64), rtol=0, atol=1e-15)
    draws = BatchDraws(torch.tensor([False]), torch.tensor([[0, 1, 2]]), torch.ones(1, 3, dtype=torch.float64), shift)
    out = finish_batch(torch.full((1, 3, 4, 5), 128, dtype=torch.uint8), CPU, draws)
    for c in range(3):
        expected = (128 / 255 + rgb[c] - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        assert torch.allclose(out[0, c], torch.full((4, 5), expected), atol=1e-6)


def lua_colour(img, draws):
    """transforms.lua's ColorJitter (Brightness, Contrast, Saturation blends in the drawn order), then
    Lighting, ColorNormalize and HorizontalFlip, step by step on one (3, H, W) image in float64."""
    def grey(x):
        return 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]

    for op, alpha in draws.jitter:
        target = [torch.zeros_like(img), torch.full_like(img, grey(img).mean().item()),
                  grey(img).expand(3, -1, -1)][op]
        img = img * alpha + (1 - alpha) * target
    for i in range(3):
        img[i] += sum(PCA_EIGVEC[i][j] * draws.lighting[j] * PCA_EIGVAL[j] for j in range(3))
        img[i] = (img[i] - IMAGENET_MEAN[i]) / IMAGENET_STD[i]
    return img.flip(2) if draws.flip else img


def test_batched_colour_augmentation_equals_the_lua_steps():
    crops = torch.randint(0, 256, (16, 3, 12, 10), dtype=torch.uint8, generator=generator(0))
    draws = [FB_RESNET.draw(generator(s), 100, 120, hflip=True) for s in range(16)]
    out = finish_batch(crops, CPU, BatchDraws.of(draws))
    for i, d in enumerate(draws):
        assert torch.allclose(out[i].double(), lua_colour(crops[i].double() / 255, d), atol=2e-6)


# ------------------------------------------------------------------------------------------------
# The pipelines
# ------------------------------------------------------------------------------------------------
def test_auto_is_tensor_on_cuda_and_pil_elsewhere():
    assert resolved_input_pipeline(imagenet(), "cuda") == "tensor"
    assert resolved_input_pipeline(imagenet(), "cpu") == "pil"
    assert resolved_input_pipeline(imagenet(input_pipeline="pil"), "cuda") == "pil"
    assert resolved_input_pipeline(imagenet(input_pipeline="tensor"), "cpu") == "tensor"
    assert imagenet().color_augment is True  # fb.resnet.torch's recipe by default


def test_colour_off_is_the_earlier_torchvision_pipeline_pixel_for_pixel(root):
    """The pipeline before colour augmentation: ImageFolder + RandomResizedCrop, RandomHorizontalFlip,
    ToTensor, Normalize, its global RNG seeded per image by (seed, epoch, position); Resize + CenterCrop
    for testing."""
    p = pipeline(root, color_augment=False, input_pipeline="pil")
    norm = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train_tf = T.Compose([T.RandomResizedCrop(24), T.RandomHorizontalFlip(), T.ToTensor(), norm])
    test_tf = T.Compose([T.Resize(round(24 * 256 / 224)), T.CenterCrop(24), T.ToTensor(), norm])
    perm = epoch_permutation(N_TRAIN, 0, 2)
    earlier = []
    for position in range(N_TRAIN):
        path, label = p.train_samples[int(perm[position])]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derived_seed("augment", 0, 2, position))
            earlier.append((train_tf(Image.open(path).convert("RGB")), label))
    ours = collect(p.train_batches(2))
    assert torch.equal(torch.cat([x for x, _ in ours]), torch.stack([x for x, _ in earlier]))
    assert torch.cat([y for _, y in ours]).tolist() == [y for _, y in earlier]
    test = torch.stack([test_tf(Image.open(path).convert("RGB")) for path, _ in p.test_samples])
    assert torch.equal(torch.cat([x for x, _ in p.test_batches()]), test)


@pytest.mark.parametrize("color_augment", [True, False])
def test_pil_and_tensor_paths_make_the_same_crops_and_flips(root, color_augment):
    pil, tensor = (pipeline(root, color_augment=color_augment, input_pipeline=path) for path in ("pil", "tensor"))
    jobs = pil.train_jobs(1)
    for job in (jobs[0], jobs[1]):
        a, b = _PilLoader(pil.recipe, 24, True)(job), _TensorLoader(pil.recipe, 24, True, decode_here=False)(job)
        for field in dataclasses.fields(BatchDraws):
            mine, theirs = getattr(a.draws, field.name), getattr(b.draws, field.name)
            assert (mine is None and theirs is None and not color_augment) or torch.equal(mine, theirs)
        sizes = [Image.open(path).size[::-1] for path, _ in job.samples]
        assert b.plans == [pil.recipe.plan(h, w, 24, seed, True)[0] for (h, w), seed in zip(sizes, job.seeds)]
    tolerance = COLOUR_TOLERANCE if color_augment else PLAIN_TOLERANCE
    for batches in (lambda p: p.train_batches(1), lambda p: p.test_batches()):
        x_pil, x_tensor = (torch.cat([x for x, _ in batches(p)]) for p in (pil, tensor))
        diff = (x_pil - x_tensor).abs()
        assert diff.max() <= tolerance and diff.mean() < MEAN_TOLERANCE, (diff.max(), diff.mean())


def test_the_device_side_of_the_tensor_path_decodes_as_the_workers_do(root):
    """What CUDA runs in the main process (decode_jpeg on a batch, crops per image) is the same code
    on the CPU as in the workers; a CMYK JPEG and a PNG named .JPEG go through PIL in the worker."""
    p = pipeline(root, input_pipeline="tensor")
    job = p.train_jobs(1)[0]
    cmyk, png = io.BytesIO(), io.BytesIO()
    Image.open(job.samples[0][0]).convert("CMYK").save(cmyk, format="JPEG")
    Image.open(job.samples[1][0]).save(png, format="PNG")
    folder = root.parent / "odd"
    odd = []
    for name, data in (("cmyk.JPEG", cmyk), ("png.JPEG", png)):
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_bytes(data.getvalue())
        odd.append((str(folder / name), 0))
    job = _Job(tuple(odd) + job.samples[2:], job.seeds)
    loaded = _TensorLoader(p.recipe, 24, True, decode_here=False)(job)
    payloads = loaded.payloads.unpack()
    assert [t.dim() for t in payloads[:3]] == [3, 3, 1]  # decoded by PIL, decoded, bytes
    assert [bytes(t.numpy()) for t in payloads[2:]] == [open(path, "rb").read() for path, _ in job.samples[2:]]
    here = _TensorLoader(p.recipe, 24, True, decode_here=True)(job).crops
    assert torch.equal(crop_batch(payloads, loaded.plans, p.recipe.interpolation, CPU, 24), here)
    for payload, (path, _) in zip(payloads[:2], odd):  # the odd files: PIL's own pixels
        assert torch.equal(payload, pil_to_tensor(Image.open(path).convert("RGB")))
    p = pipeline(root, workers=1, input_pipeline="tensor")
    expected = collect(p.train_batches(1))
    p.load = _TensorLoader(p.recipe, 24, True, decode_here=False)  # what the workers do for a CUDA device
    assert_same(collect(p.train_batches(1)), expected)


@pytest.mark.parametrize("input_pipeline", ["pil", "tensor"])
def test_rank_shares_make_up_the_one_process_batches(root, input_pipeline):
    """batch 12 of 40 images: 3 full steps and a last one of 4, each split over 2 processes; the test
    set split into two contiguous halves. Workers in one, none in the other: no difference."""
    one = pipeline(root, batch_size=12, drop_last=False, input_pipeline=input_pipeline)
    shares = [pipeline(root, workers=rank, rank=rank, batch_size=12, drop_last=False, world_size=2,
                       input_pipeline=input_pipeline) for rank in (0, 1)]
    assert all(p.steps_per_epoch == one.steps_per_epoch == 4 for p in shares)
    full = collect(one.train_batches(3))
    by_rank = [collect(p.train_batches(3)) for p in shares]
    assert [len(y) for _, y in by_rank[0]] == [6, 6, 6, 2]
    for step, (x, y) in enumerate(full):
        assert torch.equal(torch.cat([by_rank[0][step][0], by_rank[1][step][0]]), x)
        assert torch.equal(torch.cat([by_rank[0][step][1], by_rank[1][step][1]]), y)
    test = [collect(p.test_batches()) for p in shares]
    assert [[len(y) for _, y in t] for t in test] == [[6, 4], [6, 4]]
    assert torch.equal(torch.cat([x for t in test for x, _ in t]), torch.cat([x for x, _ in one.test_batches()]))


@pytest.mark.parametrize("input_pipeline", ["pil", "tensor"])
def test_a_resumed_epoch_is_the_tail_of_the_whole_one(root, input_pipeline):
    p = pipeline(root, world_size=2, rank=1, input_pipeline=input_pipeline)
    whole = collect(p.train_batches(4))
    assert len(whole) == 5 and all(x.shape == (4, 3, 24, 24) for x, _ in whole)
    assert_same(collect(p.train_batches(4, start_step=2)), whole[2:])
    assert collect(p.train_batches(4, start_step=5)) == []
    assert not torch.equal(whole[0][0], collect(p.train_batches(5))[0][0])  # another epoch, other draws


def test_bad_rank_is_refused(root):
    with pytest.raises(ValueError, match=r"rank=2: expected 0..1 \(world_size=2\)"):
        pipeline(root, rank=2, world_size=2)
