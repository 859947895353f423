"""Fashion-MNIST-Rotate: a real-data ANALOGUE of Chen et al. (2022)'s CIFAR-10-Rotate experiment.

The official ``cifar10-rotate/`` code (uclaml/MoE) asks "is this image rotated by 30 degrees?": every image appears
once upright (label 0) and once rotated (label 1), and the ten classes are the clusters. Here the same task is built
from Fashion-MNIST (:func:`moetheory.datasets.load_fashion_mnist`). What follows the official code: the task, a MoE
of 4 experts behind a router ``Conv2d(channels, 4, 4, stride 4)`` summed over positions, zero-initialised, with
U[0, 1) noise on its logits in training only, top-1 dispatch weighted by the softmax gate of the noisy logits, the
official load-balancing loss (weight 0.01), the MoE's output passed through a softmax before the cross-entropy (as
official), normalised GD for the experts (lr 1e-2, momentum 0.9, weight decay 5e-4, each expert's gradient divided
by the sum of its tensors' gradient norms), SGD for the router (lr 1e-4, momentum 0.9, weight decay 5e-4), SGD for
the single model (lr 1e-2, momentum 0.9, weight decay 5e-4), batch 128.

What differs, and why: Fashion-MNIST is 1-channel 28x28, so the rotated and upright images are centre-cropped to
20x20, the largest square whose pixels all stay inside the frame under a 30-degree rotation (the official code
crops CIFAR to 24 of 32 for the same reason: no corner artefact gives the rotation away); the experts are small CNNs
(ResNet18/MobileNetV2 do not fit a CPU budget); no random blur on the training images and no cosine schedule (the
official T_max = 200 barely moves the rate in its 10-30 epochs), so that a run is deterministic; fewer epochs; and
each run reports its FINAL test accuracy, not the best over epochs as the official script does (a choice on the
test set). A subsample per class (fixed seed, stratified) gives the quick scale.

Matched active parameters: one image uses the router and one expert (with 8 filters: 68 + 1,666 = 1,734); the
single CNN has the experts' shape with its second convolution widened to the width whose count is closest (17
channels: 1,757, within one channel's worth). Training runs on the CPU in :func:`moetheory.runtime.compute_dtype`
(float64 unless ``MOETHEORY_DTYPE`` says otherwise): small convolutions, cheap enough in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from moetheory import datasets, ledger, runtime
from moetheory.checks import check_int
from moetheory.ledger import NOT_RUN, Claim

ANGLE = 30.0  # degrees, counter-clockwise (the official RandomRotation((30, 30)))
CROP = 20  # side of the centre crop: every pixel centre within radius 14 of the centre stays in the frame
N_CLASSES = 10
N_EXPERTS = 4  # official EXPERT_NUM for cifar10-rotate
ROUTER_PATCH = 4  # official router: Conv2d(channels, experts, 4, stride 4), summed over positions
BATCH = 128
EXPERT_LR, ROUTER_LR, SINGLE_LR = 1e-2, 1e-4, 1e-2  # official
MOMENTUM, WEIGHT_DECAY = 0.9, 5e-4  # official, all three optimisers
BALANCE_WEIGHT = 0.01  # official load-balancing weight
DATA_SEED = 0  # the stratified subsample is drawn with this seed whatever the model seed
PAPER_ROTATE = {"CNN": (76.78, 79.60), "MobileNetV2": (85.76, 89.85), "ResNet18": (88.23, 92.60)}  # single, MoE %
ROUTING_THRESHOLD = 0.5  # routing-by-class criterion, fixed before any run: I(class; expert) / H(expert) >= this
MOE_VS_SINGLE_ID = "chen2022/fmnist-rotate-moe-vs-single"
ROUTING_ID = "chen2022/fmnist-rotate-routing-by-class"
_THIRD = ("Table 2 (CIFAR-10-Rotate, CNN experts: single {} %, MoE {} %; MobileNetV2 {} / {}; ResNet18 {} / "
          "{}; 5 runs, best test accuracy over epochs) as given by third-party summaries (paper text not read); "
          "the setup from the official cifar10-rotate/ (uclaml/MoE@0b0853f). ANALOGUE: our Fashion-MNIST-Rotate, "
          "small CNN experts, final test accuracy").format(*(v for p in PAPER_ROTATE.values() for v in p))
PROVENANCE = {
    MOE_VS_SINGLE_ID: ("third party", _THIRD),
    ROUTING_ID: ("derived", "derived by us, not a paper number: the paper's mechanism (the router learns the "
                            "cluster structure) read on the analogue, the ten classes being the clusters; the "
                            "measure I(class; expert) / H(expert) and its threshold are ours"),
}


# -- data --------------------------------------------------------------------------------------------------------

def rotate(images: np.ndarray, angle: float = ANGLE) -> np.ndarray:
    """``(n, 28, 28)`` images rotated by ``angle`` degrees about their centre (bilinear, zeros outside, same size):
    ``scipy.ndimage.rotate``, deterministic."""
    return ndimage.rotate(images, angle, axes=(2, 1), reshape=False, order=1, mode="constant", cval=0.0)


def center_crop(images: np.ndarray, side: int = CROP) -> np.ndarray:
    lo = (images.shape[-1] - side) // 2
    return images[..., lo:lo + side, lo:lo + side]


def stratified_indices(labels: np.ndarray, per_class: int, seed: int = DATA_SEED) -> np.ndarray:
    """``per_class`` indices of each class (all of them when it has fewer), drawn without replacement with
    ``seed``; sorted, so the draw depends only on the labels and the seed."""
    rng = np.random.default_rng(seed)
    picks = []
    for k in range(N_CLASSES):
        idx = np.flatnonzero(labels == k)
        picks.append(idx if per_class >= len(idx) else rng.choice(idx, per_class, replace=False))
    return np.sort(np.concatenate(picks))


@dataclass
class RotateData:
    """Images ``(n, 1, CROP, CROP)`` in the compute dtype, rotation labels (0 upright, 1 rotated) and classes."""

    x: torch.Tensor
    y: torch.Tensor
    cls: torch.Tensor


def make_rotate(images: np.ndarray, classes: np.ndarray, mean: float | None = None, std: float | None = None):
    """Every image once upright (label 0) and once rotated by 30 degrees (label 1), centre-cropped, standardised
    with ``mean``/``std`` (those of these images when not given). Returns ``(RotateData, mean, std)``."""
    up = images.astype(np.float64) / 255.0
    x = center_crop(np.concatenate([up, rotate(up)]))
    mean = float(x.mean()) if mean is None else mean
    std = float(x.std()) if std is None else std
    x = torch.as_tensor((x - mean) / std, dtype=torch.get_default_dtype()).unsqueeze(1)
    n = len(images)
    y = torch.cat([torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long)])
    cls = torch.as_tensor(np.concatenate([classes, classes]), dtype=torch.long)
    return RotateData(x, y, cls), mean, std


def load(per_class: int, test_per_class: int, data_home=None, download: bool = True):
    """Train and test Rotate sets from stratified subsamples of Fashion-MNIST (test standardised with the
    training statistics)."""
    images, labels = datasets.load_fashion_mnist("train", data_home, download)
    keep = stratified_indices(labels, per_class)
    train, mean, std = make_rotate(images[keep], labels[keep])
    images, labels = datasets.load_fashion_mnist("test", data_home, download)
    keep = stratified_indices(labels, test_per_class)
    test, _, _ = make_rotate(images[keep], labels[keep], mean, std)
    return train, test


# -- models ------------------------------------------------------------------------------------------------------

class CNN(torch.nn.Module):
    """Conv(1, c1, 5) - ReLU - max-pool 2 - Conv(c1, c2, 3) - ReLU - max-pool 2 - Linear(9 c2, 2), on 20x20."""

    def __init__(self, c1: int, c2: int):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, c1, 5)
        self.conv2 = torch.nn.Conv2d(c1, c2, 3)
        self.fc = torch.nn.Linear(9 * c2, 2)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))


class MoE(torch.nn.Module):
    """Top-1 MoE as the official cifar10-rotate ``NonlinearMixture*``: noisy patch-sum router (zero init, U[0,1)
    noise in training), gate = the softmax of the noisy logits at the chosen expert, output = softmax(gate x
    expert logits). Each expert computes only the images routed to it (the official code feeds it zeros
    elsewhere and multiplies them by 0: the same outputs and gradients)."""

    def __init__(self, filters: int, n_experts: int = N_EXPERTS):
        super().__init__()
        self.router = torch.nn.Conv2d(1, n_experts, ROUTER_PATCH, stride=ROUTER_PATCH)
        torch.nn.init.zeros_(self.router.weight)
        torch.nn.init.zeros_(self.router.bias)
        self.experts = torch.nn.ModuleList(CNN(filters, 2 * filters) for _ in range(n_experts))

    def route(self, x, generator=None):
        logits = self.router(x).sum((2, 3))
        if self.training:
            logits = logits + torch.rand(logits.shape, generator=generator, dtype=logits.dtype)
        probs = logits.softmax(-1)
        gate, index = probs.max(-1)
        return probs, gate, index

    def forward(self, x, generator=None):
        probs, gate, index = self.route(x, generator)
        out = x.new_zeros(len(x), 2)
        for m, expert in enumerate(self.experts):
            sel = torch.nonzero(index == m).squeeze(1)
            if len(sel):
                out = out.index_add(0, sel, gate[sel, None] * expert(x[sel]))
        density = F.one_hot(index, len(self.experts)).to(x.dtype).mean(0)
        balance = (probs.mean(0) * density).mean() * len(self.experts) ** 2  # official load-balancing loss
        return out.softmax(-1), balance, index


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def active_params(moe: MoE) -> int:
    """Parameters one image uses: the router and one expert."""
    return n_params(moe.router) + n_params(moe.experts[0])


def single_width(filters: int) -> int:
    """Width of the single CNN's second conv (first conv: ``filters``, as an expert's) whose parameter count is
    closest to the MoE's active count (one expert + the router)."""
    target = (1 + 5 * 5) * filters + (9 * filters + 1) * 2 * filters + 9 * 2 * filters * 2 + 2  # one expert
    target += (ROUTER_PATCH ** 2 + 1) * N_EXPERTS  # the router
    per = 9 * filters + 1 + 18  # one more conv2 channel: its kernel, bias and two fc weights
    base = (1 + 25) * filters + 2
    return max(1, round((target - base) / per))


# -- training ----------------------------------------------------------------------------------------------------

@torch.no_grad()
def _normalized_momentum_step(params, buffers, lr):
    """The official NormalizedGD: grad / (sum of the expert's tensors' grad norms), then SGD with weight decay and
    momentum (torch's sgd: d = g + wd p; b = mu b + d; p -= lr b). An expert that received no image in the batch
    has a zero gradient, as in the official code (which feeds it zeros): it still decays and keeps its momentum."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    norm = sum(g.norm() for g in grads)
    for p, g, b in zip(params, grads, buffers):
        b.mul_(MOMENTUM).add_((g / norm if norm != 0 else g) + WEIGHT_DECAY * p)
        p -= lr * b


def train(model, data: RotateData, epochs: int, seed: int, progress=None):
    """Minibatch training (batch 128, a seeded shuffle per epoch) with the official optimisers."""
    gen = torch.Generator().manual_seed(seed)
    is_moe = isinstance(model, MoE)
    if is_moe:
        router_opt = torch.optim.SGD(model.router.parameters(), lr=ROUTER_LR, momentum=MOMENTUM,
                                     weight_decay=WEIGHT_DECAY)
        groups = [list(e.parameters()) for e in model.experts]
        buffers = [[torch.zeros_like(p) for p in g] for g in groups]
    else:
        opt = torch.optim.SGD(model.parameters(), lr=SINGLE_LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    model.train()
    for _ in (progress or (lambda it: it))(range(epochs)):
        order = torch.randperm(len(data.y), generator=gen)
        for start in range(0, len(order), BATCH):
            idx = order[start:start + BATCH]
            model.zero_grad(set_to_none=True)
            if is_moe:
                out, balance, _ = model(data.x[idx], gen)
                loss = F.cross_entropy(out, data.y[idx]) + BALANCE_WEIGHT * balance
            else:
                loss = F.cross_entropy(model(data.x[idx]), data.y[idx])
            loss.backward()
            if is_moe:
                router_opt.step()
                for g, b in zip(groups, buffers):
                    _normalized_momentum_step(g, b, EXPERT_LR)
            else:
                opt.step()
    return model


@torch.no_grad()
def evaluate(model, data: RotateData) -> tuple[float, np.ndarray | None]:
    """Test accuracy (%) in eval mode (no router noise) and, for a MoE, each image's expert."""
    model.eval()
    outs, routes = [], []
    for start in range(0, len(data.y), 1024):
        x = data.x[start:start + 1024]
        if isinstance(model, MoE):
            out, _, index = model(x)
            routes.append(index)
        else:
            out = model(x)
        outs.append(out.argmax(-1))
    acc = 100.0 * float((torch.cat(outs) == data.y).double().mean())
    return acc, (torch.cat(routes).numpy() if routes else None)


def routing_matrix(classes: np.ndarray, experts: np.ndarray, n_experts: int = N_EXPERTS) -> np.ndarray:
    """``(10, n_experts)``: the fraction of each class's images sent to each expert (rows sum to 1)."""
    counts = np.zeros((N_CLASSES, n_experts))
    np.add.at(counts, (classes, experts), 1.0)
    return counts / counts.sum(1, keepdims=True).clip(min=1)


def class_information(classes: np.ndarray, experts: np.ndarray, n_experts: int = N_EXPERTS) -> float:
    """I(class; expert) / H(expert) of the empirical joint: 1 when the expert is a function of the class, about 0
    when routing ignores it; 0 when every image goes to one expert (H = 0: no routing at all)."""
    joint = np.zeros((N_CLASSES, n_experts))
    np.add.at(joint, (classes, experts), 1.0)
    joint /= joint.sum()
    pc, pe = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    mi = float((joint[nz] * np.log(joint[nz] / (pc @ pe)[nz])).sum())
    h = float(-(pe[pe > 0] * np.log(pe[pe > 0])).sum())
    return mi / h if h > 1e-12 else 0.0


# -- the experiment ------------------------------------------------------------------------------------------------

@dataclass
class FmnistResult:
    moe_accuracy: list  # per seed, test accuracy %
    single_accuracy: list
    routing: list  # per seed, routing_matrix (10 x experts) on the test set
    information: list  # per seed, class_information on the test set
    moe_train_accuracy: list  # per seed, accuracy % on the training set (eval mode)
    single_train_accuracy: list
    moe_active: int
    single_params: int
    n_train: int
    n_test: int

    def metrics(self) -> dict:
        return {"moe_accuracy": [round(a, 2) for a in self.moe_accuracy],
                "single_accuracy": [round(a, 2) for a in self.single_accuracy],
                "moe_train_accuracy": [round(a, 2) for a in self.moe_train_accuracy],
                "single_train_accuracy": [round(a, 2) for a in self.single_train_accuracy],
                "class_information": [round(v, 4) for v in self.information],
                "routing_matrix": [np.round(r, 4).tolist() for r in self.routing],
                "moe_active_params": self.moe_active, "single_params": self.single_params,
                "n_train": self.n_train, "n_test": self.n_test}


def check_config(cfg) -> None:
    """The ``fmnist_*`` fields of :class:`moetheory.papers.chen2022.Config`."""
    check_int("fmnist_per_class", cfg.fmnist_per_class, 0, 6000)
    check_int("fmnist_test_per_class", cfg.fmnist_test_per_class, 1, 1000)
    check_int("fmnist_epochs", cfg.fmnist_epochs, 1)
    check_int("fmnist_seeds", cfg.fmnist_seeds, 1)
    check_int("fmnist_filters", cfg.fmnist_filters, 1)


def run(cfg, progress: bool = False, data_home=None, download: bool = True) -> FmnistResult | None:
    """Train ``cfg.fmnist_seeds`` MoEs and single CNNs on Fashion-MNIST-Rotate (``None`` when
    ``cfg.fmnist_per_class`` is 0). On the CPU only (small convolutions; the compute dtype of the session)."""
    if cfg.fmnist_per_class == 0:
        return None
    with runtime.precision("cpu"):
        train_set, test_set = load(cfg.fmnist_per_class, cfg.fmnist_test_per_class, data_home, download)
        res = FmnistResult([], [], [], [], [], [], 0, 0, len(train_set.y), len(test_set.y))
        width = single_width(cfg.fmnist_filters)
        for s in range(cfg.fmnist_seeds):
            seed = cfg.seed + s
            torch.manual_seed(seed)
            moe = MoE(cfg.fmnist_filters)
            torch.manual_seed(seed)
            single = CNN(cfg.fmnist_filters, width)
            res.moe_active, res.single_params = active_params(moe), n_params(single)

            def bar(desc):
                return lambda it: runtime.progress(it, desc=desc, enabled=progress)

            train(moe, train_set, cfg.fmnist_epochs, seed, bar(f"FMNIST-Rotate MoE seed {s}"))
            train(single, train_set, cfg.fmnist_epochs, seed, bar(f"FMNIST-Rotate single seed {s}"))
            acc, experts = evaluate(moe, test_set)
            res.moe_accuracy.append(acc)
            res.single_accuracy.append(evaluate(single, test_set)[0])
            res.routing.append(routing_matrix(test_set.cls.numpy(), experts))
            res.information.append(class_information(test_set.cls.numpy(), experts))
            res.moe_train_accuracy.append(evaluate(moe, train_set)[0])
            res.single_train_accuracy.append(evaluate(single, train_set)[0])
    return res


def run_or_none(cfg, progress: bool = False) -> FmnistResult | None:
    """:func:`run` as a chapter run calls it: ``None`` (its claims: not run), with one line saying why, when the data
    are not in ``$MOETHEORY_DATA``, the cache or the Debian package (no download here)."""
    try:
        return run(cfg, progress, download=False)
    except datasets.DataNotFound as e:
        print(f"Fashion-MNIST-Rotate analogue not run: {e}")
        return None


def provenance_of(claim_id: str) -> dict:
    return ledger.provenance_entry(PROVENANCE, claim_id)


def claims(res: FmnistResult | None) -> list[Claim]:
    """The two analogue claims; `not run` when the analogue did not run. Criteria fixed before any run."""
    single, moe = PAPER_ROTATE["CNN"]
    if res is None:
        acc = info = NOT_RUN
        acc_holds = info_holds = None
    else:
        m, s = float(np.mean(res.moe_accuracy)), float(np.mean(res.single_accuracy))
        # whole points and one decimal: the seeds spread by 1-3 points and a few hundredths
        acc, acc_holds = f"MoE {m:.0f} vs single {s:.0f} (difference {m - s:+.0f} points)", m > s
        mean_info = float(np.mean(res.information))
        info, info_holds = round(mean_info, 1), mean_info >= ROUTING_THRESHOLD
    n = "" if res is None else f" ({len(res.moe_accuracy)} seeds, {res.n_train} training images)"
    return [
        Claim(MOE_VS_SINGLE_ID,
              "ANALOGUE of the paper's CIFAR-10-Rotate experiment on Fashion-MNIST-Rotate: the top-1 MoE of 4 "
              "small CNN experts reaches a higher mean test accuracy (%) than a single CNN with the same number "
              f"of active parameters{n}", f"MoE {moe:.2f} > single {single:.2f} (CIFAR-10-Rotate, CNN)", acc, acc_holds,
              criterion="mean final test accuracy over seeds of the MoE above that of the single CNN",
              **provenance_of(MOE_VS_SINGLE_ID)),
        Claim(ROUTING_ID,
              "ANALOGUE of the paper's CIFAR-10-Rotate experiment on Fashion-MNIST-Rotate: the router dispatches "
              "by class (the clusters), measured as I(class; expert) / H(expert) on the test set, mean over "
              f"seeds{n}", f">= {ROUTING_THRESHOLD}", info, info_holds,
              criterion=f"mean I(class; expert) / H(expert) >= {ROUTING_THRESHOLD} (1: the expert is a function "
                        "of the class; about 0: routing ignores it; 0 when one expert takes everything)",
              **provenance_of(ROUTING_ID)),
    ]

