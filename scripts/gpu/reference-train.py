# Reference training run: configs/resnet18.json's recipe in PyTorch on the same GPU and the same
# imported data, to tell what the recipe reaches on this JPEG copy of CIFAR-10 from what our
# WebGPU training reaches with it (issue 7's 93% goal).
#   python3 reference-train.py --data /tmp/data/cifar-10-batches-bin [--epochs 50] [--cutout 0]
#       [--precision bf16|fp32] [--deadline SECONDS] [--out reference-train.json]
#   Smoke test on a CPU: --device cpu --limit 512 --test-limit 512 --epochs 1 --precision fp32
#   On a CPU against cifar train on wasm (README, cifar train): --device cpu --width 16 --limit 10000
#   --test-limit 2000 --epochs 10 --batch 128 --lr 0.1 --warmup 0.15 --precision fp32 --seed S
# The recipe, as src/train: the CIFAR ResNet-18 (reference-pytorch.py's), batch 256 (last partial
# batch dropped), SGD with Nesterov momentum 0.9, weight decay 5e-4 on conv and dense kernels only,
# one-cycle lr (linear warm-up from lr/25 to 0.2 over 10% of the steps, cosine to lr/2500),
# label smoothing 0.1, random crop (zero padding 4) and horizontal flip, optional cutout (a square
# of the given side set to the mean, i.e. 0 after normalisation, centre uniform over the image),
# per-channel normalisation with the training split's statistics. Augmentation runs on the GPU.
# --mixup/--cutmix/--mix-until as cifar train's (src/image/mix.ts): one draw a batch, image i
# mixed with image n-1-i (the batch read backwards), targets and train accuracy in proportion;
# the draws come from numpy's generator, not ours, so the batches are alike, not identical.
# Difference kept: PyTorch's default initialisation (ours: He normal). Batch-norm epsilon 1e-5
# and momentum 0.1 match ours (1e-5; 0.9 in the Keras convention). Writes the history after
# every epoch, so a run cut at --deadline keeps it.
import argparse, json, math, os, time
import numpy as np
import torch, torch.nn as nn, torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument('--data', required=True, help='folder with data_batch_1..5.bin and test_batch.bin')
p.add_argument('--epochs', type=int, default=50)
p.add_argument('--batch', type=int, default=256)
p.add_argument('--lr', type=float, default=0.2)
p.add_argument('--warmup', type=float, default=0.1)
p.add_argument('--wd', type=float, default=5e-4)
p.add_argument('--smoothing', type=float, default=0.1)
p.add_argument('--pad', type=int, default=4)
p.add_argument('--cutout', type=int, default=0)
p.add_argument('--precision', choices=['bf16', 'fp32'], default='bf16')
p.add_argument('--deadline', type=float, default=0, help='stop after the epoch that ends past this many seconds')
p.add_argument('--seed', type=int, default=0)
p.add_argument('--device', default='cuda', help='cpu for a smoke test of this script')
p.add_argument('--limit', type=int, default=0, help='first N training images only')
p.add_argument('--test-limit', type=int, default=0, help='first N test images only')
p.add_argument('--width', type=int, default=64, help='channels of the first stage (16: resnet18-w4)')
p.add_argument('--ema', type=float, default=0, help='test an exponential moving average of the weights and batch-norm statistics, this decay a step (e.g. 0.999; 0: off), as cifar train --ema does')
p.add_argument('--mixup', type=float, default=0, help='MixUp alpha (0: off), as cifar train --mixup')
p.add_argument('--cutmix', type=float, default=0, help='CutMix alpha (0: off), as cifar train --cutmix; with --mixup, one or the other a batch at even odds')
p.add_argument('--mix-until', type=float, default=1, help='mix only in this first fraction of the steps, as cifar train --mix-until')
p.add_argument('--test-every', type=int, default=1, help='test after every Nth epoch and after the last (the one at the deadline too), as cifar train --test-every')
p.add_argument('--out', default='reference-train.json')
a = p.parse_args()


def read(names):
    raw = np.concatenate([np.fromfile(os.path.join(a.data, n), dtype=np.uint8) for n in names]).reshape(-1, 3073)
    return torch.from_numpy(raw[:, 1:].reshape(-1, 3, 32, 32).copy()), torch.from_numpy(raw[:, 0].astype(np.int64))


dev = a.device
torch.manual_seed(a.seed)
xtr, ytr = read([f'data_batch_{i}.bin' for i in range(1, 6)])
xte, yte = read(['test_batch.bin'])
if a.limit:
    xtr, ytr = xtr[:a.limit], ytr[:a.limit]
if a.test_limit:
    xte, yte = xte[:a.test_limit], yte[:a.test_limit]
xtr, ytr, xte, yte = xtr.to(dev), ytr.to(dev), xte.to(dev), yte.to(dev)
f = xtr.float().div_(255)
mean = f.mean(dim=(0, 2, 3)).view(1, 3, 1, 1)
std = f.std(dim=(0, 2, 3)).view(1, 3, 1, 1)
del f


def normalise(x):
    return (x.float().div(255) - mean) / std


def augment(xb):
    """Random crop of the zero-padded (black) image, flip, normalise, cutout: all on the GPU."""
    n = xb.shape[0]
    padded = F.pad(xb.float().div(255), (a.pad,) * 4)
    dy = torch.randint(0, 2 * a.pad + 1, (n,), device=dev)
    dx = torch.randint(0, 2 * a.pad + 1, (n,), device=dev)
    r = torch.arange(32, device=dev)
    rows = (dy[:, None] + r)[:, :, None]                     # n, 32, 1
    flip = torch.rand(n, device=dev) < 0.5
    cols = torch.where(flip[:, None], dx[:, None] + 31 - r, dx[:, None] + r)[:, None, :]  # n, 1, 32
    idx = torch.arange(n, device=dev)[:, None, None]
    crops = padded.permute(0, 2, 3, 1)[idx, rows, cols]      # n, 32, 32, 3
    x = (crops.permute(0, 3, 1, 2) - mean) / std
    if a.cutout > 0:
        cy = torch.randint(0, 32, (n, 1, 1), device=dev)
        cx = torch.randint(0, 32, (n, 1, 1), device=dev)
        h = a.cutout // 2
        y0, x0 = cy - h, cx - h
        m = (r[None, :, None] >= y0) & (r[None, :, None] < y0 + a.cutout) & (r[None, None, :] >= x0) & (r[None, None, :] < x0 + a.cutout)
        x = x.masked_fill(m[:, None], 0.0)
    return x.contiguous(memory_format=torch.channels_last)


# The network is reference-pytorch.py's own definition (its classes, before the benchmark that
# follows them; that file is kept as ../shared/gpu has it), so both scripts measure one model.
# --width 16 makes it resnet18-w4 (each stage's channels scaled from 64, 128, 256, 512).
_reference = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'reference-pytorch.py')).read()
_classes = _reference[:_reference.index("\ndev = 'cuda'")]
if a.width != 64:
    w = [a.width * k for k in (1, 2, 4, 8)]
    for old, new in [("nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64)", f"nn.Conv2d(3, {w[0]}, 3, 1, 1, bias=False), nn.BatchNorm2d({w[0]})"),
                     ("L = []; i = 64", f"L = []; i = {w[0]}"), ("[64, 128, 256, 512]", str(w)), ("nn.Linear(512, 10)", f"nn.Linear({w[3]}, 10)")]:
        assert old in _classes, f'reference-pytorch.py changed: {old!r} not found'
        _classes = _classes.replace(old, new)
exec(_classes)


model = R18().to(dev).to(memory_format=torch.channels_last)
decay = [q for n, q in model.named_parameters() if q.ndim > 1]   # conv and dense kernels
rest = [q for n, q in model.named_parameters() if q.ndim <= 1]   # batch-norm scales and shifts, biases
opt = torch.optim.SGD([{'params': decay, 'weight_decay': a.wd}, {'params': rest, 'weight_decay': 0}], lr=a.lr, momentum=0.9, nesterov=True)
ema = torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(a.ema), use_buffers=True) if a.ema > 0 else None
steps = xtr.shape[0] // a.batch
total = steps * a.epochs


mix_rng = np.random.default_rng(a.seed)
mix_steps = round(total * a.mix_until) if a.mixup > 0 or a.cutmix > 0 else 0


def draw_mix():
    """(lambda, weight map of each image's own pixels) for one batch, as src/train/augment.ts' drawMix."""
    both = a.mixup > 0 and a.cutmix > 0
    kind = ('cutmix' if mix_rng.random() < 0.5 else 'mixup') if both else ('cutmix' if a.cutmix > 0 else 'mixup')
    lam = float(mix_rng.beta(a.cutmix if kind == 'cutmix' else a.mixup, a.cutmix if kind == 'cutmix' else a.mixup))
    if kind == 'mixup':
        return lam, torch.full((1, 1, 32, 32), lam, device=dev)
    half = int(32 * math.sqrt(1 - lam)) // 2
    cy, cx = int(mix_rng.integers(32)), int(mix_rng.integers(32))
    top, bottom, left, right = max(0, cy - half), min(32, cy + half), max(0, cx - half), min(32, cx + half)
    w = torch.ones((1, 1, 32, 32), device=dev)
    w[:, :, top:bottom, left:right] = 0
    return 1 - (bottom - top) * (right - left) / 1024, w


def one_cycle(step):
    start, end = a.lr / 25, a.lr / 2500
    warm = max(1, round(total * a.warmup))
    if step < warm:
        return start + (a.lr - start) * step / warm
    t = min(1.0, (step - warm) / max(1, total - warm))
    return end + (a.lr - end) * (1 + math.cos(math.pi * t)) / 2


autocast = lambda: torch.autocast(dev, torch.bfloat16, enabled=a.precision == 'bf16')
history, t0, step = [], time.perf_counter(), 0
result = {'recipe': vars(a), 'torch': torch.__version__, 'gpu': torch.cuda.get_device_name(0) if dev == 'cuda' else 'cpu', 'history': history}
for epoch in range(1, a.epochs + 1):
    model.train()
    te = time.perf_counter()
    order = torch.randperm(xtr.shape[0], device=dev)
    loss_sum = torch.zeros((), device=dev); correct = torch.zeros((), device=dev)
    for s in range(steps):
        for g in opt.param_groups:
            g['lr'] = one_cycle(step)
        i = order[s * a.batch:(s + 1) * a.batch]
        x, y = augment(xtr[i]), ytr[i]
        lam = 1.0
        if step < mix_steps:
            lam, w = draw_mix()
            x = (x * w + x.flip(0) * (1 - w)).contiguous(memory_format=torch.channels_last)
        with autocast():
            logits = model(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=a.smoothing)
            if lam < 1:
                loss = lam * loss + (1 - lam) * F.cross_entropy(logits.float(), y.flip(0), label_smoothing=a.smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if ema is not None:
            ema.update_parameters(model)
        step += 1
        loss_sum += loss.detach() * a.batch
        answers = logits.argmax(1)
        correct += (answers == y).sum() * lam + ((answers == y.flip(0)).sum() * (1 - lam) if lam < 1 else 0)
    if dev == 'cuda':
        torch.cuda.synchronize()
    train_s = time.perf_counter() - te
    last = epoch == a.epochs or bool(a.deadline and time.perf_counter() - t0 > a.deadline)
    tested = last or epoch % a.test_every == 0
    net = model if ema is None else ema.module
    net.eval()
    test_correct, test_loss, tta_correct = 0, 0.0, 0
    with torch.no_grad(), autocast():
        for s in range(0, xte.shape[0] if tested else 0, 500):
            xs = normalise(xte[s:s + 500]).contiguous(memory_format=torch.channels_last)
            lo = net(xs).float()
            test_loss += F.cross_entropy(lo, yte[s:s + 500], reduction='sum').item()
            test_correct += (lo.argmax(1) == yte[s:s + 500]).sum().item()
            # Flip TTA as `cifar eval --tta`: the mean of the softmaxes of the image and its mirror.
            mirrored = net(torch.flip(xs, dims=[3]).contiguous(memory_format=torch.channels_last)).float()
            tta_correct += ((lo.softmax(1) + mirrored.softmax(1)).argmax(1) == yte[s:s + 500]).sum().item()
    row = {'epoch': epoch, 'trainLoss': loss_sum.item() / (steps * a.batch), 'trainAccuracy': correct.item() / (steps * a.batch),
           'testLoss': test_loss / xte.shape[0], 'testAccuracy': test_correct / xte.shape[0], 'testAccuracyTta': tta_correct / xte.shape[0],
           'lr': one_cycle(step - 1), 'seconds': train_s}
    if not tested:
        row.update(testLoss=None, testAccuracy=None, testAccuracyTta=None)
    history.append(row)
    test = f"test loss {row['testLoss']:.4f} acc {100 * row['testAccuracy']:.2f}% (flip TTA {100 * row['testAccuracyTta']:.2f}%)" if tested else 'no test pass'
    print(f"{epoch:3d}/{a.epochs}  train loss {row['trainLoss']:.4f} acc {100 * row['trainAccuracy']:.2f}%  {test}  {train_s:.1f} s", flush=True)
    result['seconds'] = time.perf_counter() - t0
    with open(a.out + '.tmp', 'w') as fh:
        json.dump(result, fh, indent=1)
    os.replace(a.out + '.tmp', a.out)
    if last and epoch < a.epochs:
        print(f'stopped at the deadline after epoch {epoch}', flush=True)
        break
extras = ''.join(f' {k} {v}' for k, v in [('batch', a.batch), ('mixup', a.mixup), ('cutmix', a.cutmix), ('mix-until', a.mix_until), ('ema', a.ema)] if v != {'batch': 256, 'mix-until': 1}.get(k, 0))
print(f"reference {a.precision} cutout {a.cutout}{extras}: test accuracy {100 * history[-1]['testAccuracy']:.2f}% (flip TTA {100 * history[-1]['testAccuracyTta']:.2f}%) after {len(history)} epochs in {result['seconds']:.0f} s ({result['gpu']})", flush=True)
