/**
 * Training-mode batch normalisation for the WebGPU backend in a handful of dispatches.
 *
 * Built from stock tfjs ops, one batch norm costs 38 dispatches per training step (forward,
 * backward and the moving-average update) and 9 uploads, as every `tf.div(t, M)` or
 * `tf.mul(t, momentum)` makes a fresh scalar tensor that goes through a staging buffer. In Node through Dawn each dispatch costs
 * ~0.25 ms of CPU (bind group, uniform buffer, encoding), which made the training step CPU-bound.
 * Here x is viewed as an [M, C] matrix (NHWC, channels last) and:
 *
 * - forward: `StatsPartialProgram` (per-workgroup mean and M2 of a block of rows, reads
 *   coalesced across channels) -> `StatsFinalProgram` (Chan's parallel combination into the
 *   [2, C] stats tensor: mean; biased variance) -> `NormalizeProgram` (y). 3 dispatches.
 * - backward: `GradPartialProgram` (per-workgroup sums of dy and dy * (x - mean)) ->
 *   `PartialSumProgram` twice (dbeta, dgamma) -> `NormalizeGradProgram` (dx). 4 dispatches.
 * - moving statistics: `StatsRowProgram`, one per variable (2 dispatches).
 *
 * Where in-place dispatches can run (`canUpdateInPlace`: on webgpu, compiling only included), two
 * pairs become one dispatch each, as tfjs programs have a single output and these write
 * several tensors: the statistics' final reduction with both moving averages
 * (`runBatchNormStats` with `moving`), and dbeta with dgamma (`runBatchNormGrad`). A layer's
 * training step is then 6 dispatches instead of 9.
 *
 * Every constant is baked into the WGSL source (and the shader key) or passed as a program
 * uniform, so nothing is uploaded per call.
 */
import type { Tensor, TensorInfo } from '@tensorflow/tfjs';
import { canUpdateInPlace, dispatchInPlace } from './in-place.js';
import type { GpuProgram, ProgramUniform, WebGpuBackendLike } from './program.js';
import { reluWgsl, stepWgsl } from './relu-grad.js';

/** Threads per workgroup of the row-block reductions. */
export const REDUCE_THREADS = 256;
/** Threads per channel in the final reductions over the per-workgroup partials. */
export const FINAL_THREADS = 64;
/** Threads per workgroup of the elementwise programs. */
export const APPLY_THREADS = 256;
/** Upper bound on row blocks (partials per channel): enough workgroups to fill a large GPU, few enough to combine in one pass. */
export const MAX_ROW_BLOCKS = 512;
/** Fewest rows one thread reduces, so that small tensors do not fan out into tiny workgroups. */
export const MIN_STEPS = 8;

/** How a row-block reduction covers x viewed as [M, C]. */
export interface ReducePlan {
  m: number;
  c: number;
  /** Channels per workgroup: all of them up to REDUCE_THREADS, else tiles of REDUCE_THREADS. */
  tileC: number;
  /** Rows a workgroup reads at once (REDUCE_THREADS / tileC, rounded down): a contiguous rowsPerStep x C block when tileC = C. */
  rowsPerStep: number;
  /** Rows each thread visits, rowsPerStep apart. */
  steps: number;
  /** Rows per workgroup (rowsPerStep * steps); the last block may be short. */
  rowsPerBlock: number;
  /** Row blocks: the number of partials per channel. */
  blocks: number;
  channelTiles: number;
}

/**
 * Plans the reduction of an [m, c] matrix over its rows.
 * @example planReduce(262144, 64) // tileC 64, rowsPerStep 4, steps 128, rowsPerBlock 512, blocks 512
 */
export function planReduce(m: number, c: number): ReducePlan {
  const tileC = Math.min(c, REDUCE_THREADS);
  const rowsPerStep = Math.floor(REDUCE_THREADS / tileC);
  const steps = Math.max(MIN_STEPS, Math.ceil(m / (rowsPerStep * MAX_ROW_BLOCKS)));
  const rowsPerBlock = rowsPerStep * steps;
  return { m, c, tileC, rowsPerStep, steps, rowsPerBlock, blocks: Math.ceil(m / rowsPerBlock), channelTiles: Math.ceil(c / tileC) };
}

const planKey = (p: ReducePlan): string => `${p.m}x${p.c}_${p.tileC}x${p.rowsPerStep}x${p.steps}`;

/** The plan's geometry as WGSL constants. */
function planConstants(p: ReducePlan): string {
  return `
  const BN_M = ${p.m};
  const BN_C = ${p.c};
  const BN_TILE_C = ${p.tileC};
  const BN_ROWS_PER_STEP = ${p.rowsPerStep};
  const BN_STEPS = ${p.steps};
  const BN_ROWS_PER_BLOCK = ${p.rowsPerBlock};`;
}

/**
 * Chan et al.'s pairwise update: (count, mean, M2) of the union of two sets from those of each.
 * Exact in exact arithmetic and, unlike E[x^2] - E[x]^2, free of cancellation when the mean is
 * large relative to the spread.
 */
const CHAN_COMBINE = `
  fn chanCombine(a : vec3<f32>, b : vec3<f32>) -> vec3<f32> {
    if (b.x == 0.0) { return a; }
    if (a.x == 0.0) { return b; }
    let n = a.x + b.x;
    let delta = b.y - a.y;
    let f = b.x / n;
    return vec3<f32>(n, a.y + delta * f, a.z + b.z + delta * delta * a.x * f);
  }`;

/**
 * The prologue shared by the row-block reductions: which channel and rows this thread visits.
 * Thread t reads channel `ch` = tile * tileC + t % tileC in rows `row0`, `row0 + rowsPerStep`,
 * ... below `rowEnd`, so that a step of the workgroup reads a contiguous rowsPerStep x C block.
 *
 * Every program must read its uniforms and each of its inputs somewhere: tfjs creates pipelines
 * with `layout: 'auto'`, which leaves unused bindings out, and then binds all of them anyway;
 * the bind group fails validation and, since tfjs installs no error scope, the output silently
 * stays zero. Hence M from the uniforms here, where the constant BN_M would do.
 */
const REDUCE_PROLOGUE = `
    let t = i32(localIndex);
    let r = t / BN_TILE_C;
    let ch = i32(workgroupId.x) * BN_TILE_C + (t - r * BN_TILE_C);
    let block = i32(workgroupId.y);
    let inRange = r < BN_ROWS_PER_STEP && ch < BN_C;
    let row0 = block * BN_ROWS_PER_BLOCK + r;
    let rowEnd = min(uniforms.xShape.x, (block + 1) * BN_ROWS_PER_BLOCK); // xShape.x = M`;

/**
 * dy times ReLU's step at the fused output v (`NormalizeProgram` with `relu`): 1 above 0, else 0,
 * NaN stays NaN, as tfjs' Step and our ReLU gradient (relu-grad.ts) do. v > 0 exactly where the
 * batch norm's output was, so this is ReLU's gradient on its input.
 */
const RELU_MASK = `
  fn bnReluGrad(d : f32, v : f32) -> f32 { return d * ${stepWgsl('v')}; }`;

abstract class RowBlockReduction implements GpuProgram {
  abstract variableNames: string[];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [1], y: [0] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [REDUCE_THREADS, 1, 1];

  constructor(
    protected readonly plan: ReducePlan,
    name: string,
  ) {
    // Partials: [block, 2, C], two statistics per channel and row block.
    this.outputShape = [plan.blocks, 2 * plan.c];
    this.dispatch = [plan.channelTiles, plan.blocks, 1];
    this.shaderKey = `${name}_${planKey(plan)}`;
  }

  abstract getUserCode(): string;
}

/**
 * Per row block and channel, the mean and M2 (sum of squared deviations) of x. Each thread sums
 * x - shift and its square, the shift being the first value it reads (a sample of the channel,
 * so the sums stay on the scale of the spread, not the mean); the threads of a channel are then
 * merged with Chan's update.
 */
export class StatsPartialProgram extends RowBlockReduction {
  variableNames = ['x'];

  constructor(plan: ReducePlan) {
    super(plan, 'cifarBnStatsPartial');
  }

  getUserCode(): string {
    return `
${planConstants(this.plan)}
${CHAN_COMBINE}
  var<workgroup> bnAcc : array<vec3<f32>, ${REDUCE_THREADS}>;

  fn main() {
    ${REDUCE_PROLOGUE}
    var n = 0.0;
    var shift = 0.0;
    var s1 = 0.0;
    var s2 = 0.0;
    if (inRange && row0 < rowEnd) {
      shift = x[row0 * BN_C + ch];
      for (var i = 0; i < BN_STEPS; i++) {
        let row = row0 + i * BN_ROWS_PER_STEP;
        if (row < rowEnd) {
          let d = x[row * BN_C + ch] - shift;
          s1 = s1 + d;
          s2 = fma(d, d, s2);
          n = n + 1.0;
        }
      }
    }
    var acc = vec3<f32>(0.0, shift, 0.0);
    if (n > 0.0) { acc = vec3<f32>(n, shift + s1 / n, max(0.0, s2 - s1 * s1 / n)); }
    bnAcc[t] = acc;
    workgroupBarrier();
    if (r == 0 && ch < BN_C) {
      for (var k = 1; k < BN_ROWS_PER_STEP; k++) {
        acc = chanCombine(acc, bnAcc[k * BN_TILE_C + t]);
      }
      result[block * 2 * BN_C + ch] = acc.y;
      result[(block * 2 + 1) * BN_C + ch] = acc.z;
    }
  }`;
  }
}

/**
 * Per row block and channel, the sums of dy and dy * (x - mean): what the gradients of beta,
 * gamma and x need. Plain sums suffice here: x - mean is already centred.
 */
export class GradPartialProgram extends RowBlockReduction {
  variableNames: string[];

  /** `masked`: dy is the gradient of relu(batch norm), whose output `fusedOut` comes as a fourth input. */
  constructor(
    plan: ReducePlan,
    private readonly masked = false,
  ) {
    super(plan, masked ? 'cifarBnGradPartialRelu' : 'cifarBnGradPartial');
    this.variableNames = masked ? ['dy', 'x', 'stats', 'fusedOut'] : ['dy', 'x', 'stats'];
  }

  getUserCode(): string {
    const d = this.masked ? 'bnReluGrad(dy[row * BN_C + ch], fusedOut[row * BN_C + ch])' : 'dy[row * BN_C + ch]';
    return `
${planConstants(this.plan)}
${this.masked ? RELU_MASK : ''}
  var<workgroup> bnAcc : array<vec2<f32>, ${REDUCE_THREADS}>;

  fn main() {
    ${REDUCE_PROLOGUE}
    var acc = vec2<f32>(0.0, 0.0);
    if (inRange) {
      let mean = stats[ch];
      for (var i = 0; i < BN_STEPS; i++) {
        let row = row0 + i * BN_ROWS_PER_STEP;
        if (row < rowEnd) {
          let d = ${d};
          acc = vec2<f32>(acc.x + d, fma(d, x[row * BN_C + ch] - mean, acc.y));
        }
      }
    }
    bnAcc[t] = acc;
    workgroupBarrier();
    if (r == 0 && ch < BN_C) {
      for (var k = 1; k < BN_ROWS_PER_STEP; k++) {
        acc = acc + bnAcc[k * BN_TILE_C + t];
      }
      result[block * 2 * BN_C + ch] = acc.x;
      result[(block * 2 + 1) * BN_C + ch] = acc.y;
    }
  }`;
  }
}

/** The tree in workgroup memory that merges bnFin[0..FINAL_THREADS) into bnFin[0] with `merge` ($A, $B). */
function treeMerge(merge: string): string {
  const levels: string[] = [];
  for (let half = FINAL_THREADS / 2; half >= 1; half /= 2) {
    levels.push(`if (t < ${half}) { bnFin[t] = ${merge.replace('$A', 'bnFin[t]').replace('$B', `bnFin[t + ${half}]`)}; }
    workgroupBarrier();`);
  }
  return levels.join('\n    ');
}

/**
 * The WGSL of a per-channel reduction over the row blocks' partials: one workgroup per channel,
 * FINAL_THREADS threads each folding every FINAL_THREADS-th block with `fold`, then a tree in
 * workgroup memory with `merge`. `T` is the accumulator type, `init` its empty value, `write`
 * stores the total `acc` for channel `ch`.
 */
function partialsReduceSource(plan: ReducePlan, s: { type: string; init: string; fold: string; merge: string; write: string; helpers?: string }): string {
  return `
${planConstants(plan)}
${s.helpers ?? ''}
  var<workgroup> bnFin : array<${s.type}, ${FINAL_THREADS}>;

  fn main(globalIndex : i32) {
    // partialsShape.x: the number of row blocks, read from the uniforms so that they are bound (see REDUCE_PROLOGUE).
    ${foldPartials('uniforms.partialsShape.x', s)}
  }`;
}

/**
 * The body both kinds of final reduction share, in a workgroup of FINAL_THREADS for channel
 * `ch`: thread t folds partials t, t + FINAL_THREADS, ... below `blocks` into `acc`, the tree
 * merges the threads' results, and thread 0 writes.
 */
function foldPartials(blocks: string, s: { init: string; fold: string; merge: string; write: string }): string {
  return `let t = i32(localIndex);
    let ch = i32(workgroupId.x);
    var acc = ${s.init};
    for (var block = t; block < ${blocks}; block += ${FINAL_THREADS}) {
      ${s.fold}
    }
    bnFin[t] = acc;
    workgroupBarrier();
    ${treeMerge(s.merge)}
    if (t == 0) {
      acc = bnFin[0];
      ${s.write}
    }`;
}

/**
 * The same reduction as a stand-alone in-place program (for `dispatchInPlace`, which writes
 * several tensors in one dispatch): the geometry comes from the uniforms `h` (blocks, c, and
 * whatever `hyper` adds), so one pipeline serves every shape. Folds the partials in the same
 * order as `partialsReduceSource`, so both give the same numbers.
 */
function inPlaceReduceSource(s: { hyper: string; bindings: string; type: string; init: string; fold: string; merge: string; write: string; helpers?: string }): string {
  return `
struct Hyper { blocks : u32, c : u32, ${s.hyper} };
${s.bindings}
${s.helpers ?? ''}
var<workgroup> bnFin : array<${s.type}, ${FINAL_THREADS}>;

@compute @workgroup_size(${FINAL_THREADS})
fn main(@builtin(local_invocation_index) localIndex : u32, @builtin(workgroup_id) workgroupId : vec3<u32>) {
  let BN_C = i32(h.c);
  ${foldPartials('i32(h.blocks)', s)}
}`;
}

abstract class PartialsReduction implements GpuProgram {
  abstract variableNames: string[];
  outputShape: number[];
  shaderKey: string;
  // Flat layout (tfjs then passes main() the global index, unused here: workgroup = channel).
  dispatchLayout: { x: number[] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [FINAL_THREADS, 1, 1];

  constructor(
    protected readonly plan: ReducePlan,
    outputShape: number[],
    key: string,
  ) {
    this.outputShape = outputShape;
    this.dispatchLayout = { x: outputShape.map((_, i) => i) };
    this.dispatch = [plan.c, 1, 1];
    this.shaderKey = `${key}_${planKey(plan)}`;
  }

  abstract getUserCode(): string;
}

/** The [2, C] stats tensor (row 0: mean, row 1: biased variance) from the `StatsPartialProgram` partials. */
export class StatsFinalProgram extends PartialsReduction {
  variableNames = ['partials'];

  constructor(plan: ReducePlan) {
    super(plan, [2, plan.c], 'cifarBnStatsFinal');
  }

  getUserCode(): string {
    return partialsReduceSource(this.plan, {
      helpers: CHAN_COMBINE,
      type: 'vec3<f32>',
      init: 'vec3<f32>(0.0, 0.0, 0.0)',
      fold: `let n = f32(min(BN_ROWS_PER_BLOCK, BN_M - block * BN_ROWS_PER_BLOCK));
      acc = chanCombine(acc, vec3<f32>(n, partials[block * 2 * BN_C + ch], partials[(block * 2 + 1) * BN_C + ch]));`,
      merge: 'chanCombine($A, $B)',
      write: `result[ch] = acc.y;
      result[BN_C + ch] = acc.z / f32(BN_M);`,
    });
  }
}

/**
 * One row (0 or 1) of the `GradPartialProgram` partials summed over the row blocks, into a [C]
 * tensor; times 1 / sqrt(variance + epsilon) when `scaleByInvStd` (dgamma = invStd * sum(dy * (x - mean))).
 */
export class PartialSumProgram extends PartialsReduction {
  variableNames: string[];
  uniforms?: string;

  constructor(
    plan: ReducePlan,
    private readonly row: 0 | 1,
    private readonly scaleByInvStd: boolean,
  ) {
    super(plan, [plan.c], `cifarBnPartialSum${row}${scaleByInvStd ? 's' : ''}`);
    // Only the scaled sum reads the statistics (an unread input would break the binding).
    this.variableNames = scaleByInvStd ? ['partials', 'stats'] : ['partials'];
    if (scaleByInvStd) this.uniforms = 'epsilon : f32,';
  }

  getUserCode(): string {
    const scale = this.scaleByInvStd ? ' * inverseSqrt(stats[BN_C + ch] + uniforms.epsilon)' : '';
    return partialsReduceSource(this.plan, {
      type: 'f32',
      init: '0.0',
      fold: `acc = acc + partials[(block * 2 + ${this.row}) * BN_C + ch];`,
      merge: '$A + $B',
      write: `result[ch] = acc${scale};`,
    });
  }
}

/** Elementwise over x viewed as [M, C], one thread per element; the channel is index % C. */
abstract class ChannelElementwise implements GpuProgram {
  abstract variableNames: string[];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [0, 1] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [APPLY_THREADS, 1, 1];
  uniforms = 'epsilon : f32,';
  size = true;

  constructor(
    protected readonly m: number,
    protected readonly c: number,
    key: string,
  ) {
    this.outputShape = [m, c];
    this.dispatch = [Math.ceil((m * c) / APPLY_THREADS), 1, 1];
    this.shaderKey = `${key}_${c}`;
  }

  abstract getUserCode(): string;

  /** WGSL main() running `body` for each element, with its channel `ch` and that channel's `invStd` (from the [2, C] stats). */
  protected perElement(body: string): string {
    return `
  const BN_C = ${this.c};
  fn main(index : i32) {
    if (index < uniforms.size) {
      let ch = index % BN_C;
      let invStd = inverseSqrt(stats[BN_C + ch] + uniforms.epsilon);
      ${body}
    }
  }`;
  }
}

/**
 * y = (x - mean) * (invStd * gamma) + beta, reading mean and variance from the [2, C] stats; with
 * `relu`, max(y, 0) as tfjs' Relu computes it (NaN stays NaN).
 */
export class NormalizeProgram extends ChannelElementwise {
  variableNames = ['x', 'stats', 'gamma', 'beta'];

  constructor(
    m: number,
    c: number,
    private readonly relu = false,
  ) {
    super(m, c, relu ? 'cifarBnNormalizeRelu' : 'cifarBnNormalize');
  }

  getUserCode(): string {
    const y = 'fma(x[index] - stats[ch], invStd * gamma[ch], beta[ch])';
    return this.perElement(this.relu ? `let v = ${y};
      setOutputAtIndex(index, ${reluWgsl('v')});` : `setOutputAtIndex(index, ${y});`);
  }
}

/**
 * dx = a * (dy - dbeta / M - xhat * dgamma / M), with a = gamma * invStd and
 * xhat = (x - mean) * invStd: the batch-norm input gradient, dgamma and dbeta being the finished
 * parameter gradients (sum(dy * xhat) and sum(dy)).
 */
export class NormalizeGradProgram extends ChannelElementwise {
  variableNames: string[];

  override uniforms = 'epsilon : f32, invCount : f32,';

  /** `masked`: dy is the gradient of relu(batch norm), whose output `fusedOut` comes as a seventh input. */
  constructor(
    m: number,
    c: number,
    private readonly masked = false,
  ) {
    super(m, c, masked ? 'cifarBnNormalizeGradRelu' : 'cifarBnNormalizeGrad');
    this.variableNames = ['dy', 'x', 'stats', 'gamma', 'dgamma', 'dbeta', ...(masked ? ['fusedOut'] : [])];
  }

  getUserCode(): string {
    const d = this.masked ? 'bnReluGrad(dy[index], fusedOut[index])' : 'dy[index]';
    return `${this.masked ? RELU_MASK : ''}
${this.perElement(`let xhat = (x[index] - stats[ch]) * invStd;
      let centred = ${d} - dbeta[ch] * uniforms.invCount - xhat * (dgamma[ch] * uniforms.invCount);
      setOutputAtIndex(index, gamma[ch] * invStd * centred);`)}`;
  }
}

/**
 * One row of the [2, C] stats as a [C] tensor, optionally blended into an old value:
 * keep * old + take * stats[row] (the moving-average update with keep = momentum,
 * take = 1 - momentum, both uniforms).
 */
export class StatsRowProgram implements GpuProgram {
  variableNames: string[];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [0] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [64, 1, 1];
  uniforms = 'keep : f32, take : f32,';
  size = true;

  constructor(
    private readonly c: number,
    private readonly row: 0 | 1,
    private readonly blend: boolean,
  ) {
    this.variableNames = blend ? ['old', 'stats'] : ['stats'];
    this.outputShape = [c];
    this.dispatch = [Math.ceil(c / 64), 1, 1];
    this.shaderKey = `cifarBnStatsRow${row}${blend ? 'b' : ''}_${c}`;
  }

  getUserCode(): string {
    const value = `stats[${this.row * this.c} + index]`;
    return `
  fn main(index : i32) {
    if (index < uniforms.size) {
      setOutputAtIndex(index, ${this.blend ? `fma(uniforms.keep, old[index], uniforms.take * ${value})` : value});
    }
  }`;
  }
}

const epsilonUniform = (epsilon: number): ProgramUniform => [{ type: 'float32', data: [epsilon] }];

/** x's dimensions as [M, C], channels last. */
export function asMatrix(shape: readonly number[]): [number, number] {
  const c = shape[shape.length - 1] ?? 1;
  return [shape.reduce((a, b) => a * b, 1) / c, c];
}

/** The same data viewed with another shape (for binding only: the backend reads shapes as uniforms). */
const view = (t: TensorInfo, shape: number[]): TensorInfo => ({ dataId: t.dataId, shape, dtype: t.dtype });

/** The moving averages a training forward updates from its batch statistics (see `runBatchNormStats`). */
export interface MovingStats {
  mean: Tensor;
  variance: Tensor;
  /** Weight of the old value (Keras convention). */
  momentum: number;
}

/**
 * Batch mean and biased variance of NHWC x as a [2, C] tensor (2 dispatches). With `moving`, the
 * same dispatch that finishes the statistics also updates the moving averages in place
 * (mean ← momentum·mean + (1 − momentum)·batch mean, the same for the variance; `runStatsRow`
 * does it as programs). The variables must own their storage (`ensureOwnStorage`); check
 * `canUpdateInPlace()` first.
 */
export function runBatchNormStats(backend: WebGpuBackendLike, x: TensorInfo, moving?: MovingStats): TensorInfo {
  const [m, c] = asMatrix(x.shape);
  const plan = planReduce(m, c);
  const partials = backend.runWebGPUProgram(new StatsPartialProgram(plan), [view(x, [m, c])], 'float32');
  let stats: TensorInfo;
  if (moving) {
    stats = backend.makeTensorInfo([2, c], 'float32');
    finishStatsInPlace(plan, partials, stats, moving);
  } else {
    stats = backend.runWebGPUProgram(new StatsFinalProgram(plan), [partials], 'float32');
  }
  backend.disposeData(partials.dataId);
  return stats;
}

/**
 * `StatsFinalProgram` and the moving-average update in one in-place dispatch: writes the [2, C]
 * `stats` (made without values) and blends mean and variance into the moving averages.
 */
function finishStatsInPlace(plan: ReducePlan, partials: TensorInfo, stats: TensorInfo, moving: MovingStats): void {
  if (moving.mean.size !== plan.c || moving.variance.size !== plan.c) throw new Error(`moving statistics: sizes differ (${plan.c}, ${moving.mean.size}, ${moving.variance.size})`);
  dispatchInPlace({
    key: 'bnStatsMoving',
    code: () =>
      inPlaceReduceSource({
        hyper: 'm : u32, rowsPerBlock : u32, keep : f32, take : f32',
        bindings: `@group(0) @binding(0) var<storage, read> partials : array<f32>;
@group(0) @binding(1) var<storage, read_write> stats : array<f32>;
@group(0) @binding(2) var<storage, read_write> movingMean : array<f32>;
@group(0) @binding(3) var<storage, read_write> movingVariance : array<f32>;
@group(0) @binding(4) var<uniform> h : Hyper;`,
        helpers: CHAN_COMBINE,
        type: 'vec3<f32>',
        init: 'vec3<f32>(0.0, 0.0, 0.0)',
        fold: `let n = f32(min(i32(h.rowsPerBlock), i32(h.m) - block * i32(h.rowsPerBlock)));
    acc = chanCombine(acc, vec3<f32>(n, partials[block * 2 * BN_C + ch], partials[(block * 2 + 1) * BN_C + ch]));`,
        merge: 'chanCombine($A, $B)',
        write: `let variance = acc.z / f32(h.m);
    stats[ch] = acc.y;
    stats[BN_C + ch] = variance;
    movingMean[ch] = fma(h.keep, movingMean[ch], h.take * acc.y);
    movingVariance[ch] = fma(h.keep, movingVariance[ch], h.take * variance);`,
      }),
    tensors: [partials, stats, moving.mean, moving.variance],
    written: [stats, moving.mean, moving.variance],
    uniforms: [
      { type: 'uint32', data: [plan.blocks] },
      { type: 'uint32', data: [plan.c] },
      { type: 'uint32', data: [plan.m] },
      { type: 'uint32', data: [plan.rowsPerBlock] },
      { type: 'float32', data: [moving.momentum] },
      { type: 'float32', data: [1 - moving.momentum] },
    ],
    grid: [plan.c, 1, 1],
    name: 'BatchNormStatsMoving',
  });
}

/** y = (x - mean) / sqrt(variance + epsilon) * gamma + beta, with x's shape (1 dispatch); with `relu`, max(y, 0). */
export function runBatchNormApply(backend: WebGpuBackendLike, x: TensorInfo, stats: TensorInfo, gamma: TensorInfo, beta: TensorInfo, epsilon: number, relu = false): TensorInfo {
  const [m, c] = asMatrix(x.shape);
  const y = backend.runWebGPUProgram(new NormalizeProgram(m, c, relu), [view(x, [m, c]), stats, gamma, beta], 'float32', epsilonUniform(epsilon));
  return view(y, [...x.shape]);
}

/**
 * Gradients of batch norm w.r.t. x, gamma and beta: 3 dispatches when `inPlace` (the default
 * where `canUpdateInPlace()`: both parameter gradients in one), else 4. With `reluOutput` (the
 * output of `runBatchNormApply` with `relu`), dy is the gradient of relu(batch norm), and ReLU's
 * gradient is taken in the same dispatches.
 */
export function runBatchNormGrad(
  backend: WebGpuBackendLike,
  dy: TensorInfo,
  x: TensorInfo,
  stats: TensorInfo,
  gamma: TensorInfo,
  epsilon: number,
  inPlace = canUpdateInPlace(),
  reluOutput?: TensorInfo,
): { dx: TensorInfo; dGamma: TensorInfo; dBeta: TensorInfo } {
  const [m, c] = asMatrix(x.shape);
  const plan = planReduce(m, c);
  const [dy2, x2] = [view(dy, [m, c]), view(x, [m, c])];
  const masked = reluOutput !== undefined;
  const y2 = masked ? [view(reluOutput, [m, c])] : [];
  const partials = backend.runWebGPUProgram(new GradPartialProgram(plan, masked), [dy2, x2, stats, ...y2], 'float32');
  let dBeta: TensorInfo;
  let dGamma: TensorInfo;
  if (inPlace) {
    [dBeta, dGamma] = [backend.makeTensorInfo([c], 'float32'), backend.makeTensorInfo([c], 'float32')];
    sumGradPartialsInPlace(plan, partials, stats, dBeta, dGamma, epsilon);
  } else {
    dBeta = backend.runWebGPUProgram(new PartialSumProgram(plan, 0, false), [partials], 'float32');
    dGamma = backend.runWebGPUProgram(new PartialSumProgram(plan, 1, true), [partials, stats], 'float32', epsilonUniform(epsilon));
  }
  backend.disposeData(partials.dataId);
  const dx = backend.runWebGPUProgram(new NormalizeGradProgram(m, c, masked), [dy2, x2, stats, gamma, dGamma, dBeta, ...y2], 'float32', [
    ...epsilonUniform(epsilon),
    { type: 'float32', data: [1 / m] },
  ]);
  return { dx: view(dx, [...x.shape]), dGamma, dBeta };
}

/** Both `PartialSumProgram`s in one in-place dispatch, into `dBeta` and `dGamma` (made without values). */
function sumGradPartialsInPlace(plan: ReducePlan, partials: TensorInfo, stats: TensorInfo, dBeta: TensorInfo, dGamma: TensorInfo, epsilon: number): void {
  dispatchInPlace({
    key: 'bnGradSums',
    code: () =>
      inPlaceReduceSource({
        hyper: 'epsilon : f32',
        bindings: `@group(0) @binding(0) var<storage, read> partials : array<f32>;
@group(0) @binding(1) var<storage, read> stats : array<f32>;
@group(0) @binding(2) var<storage, read_write> dbeta : array<f32>;
@group(0) @binding(3) var<storage, read_write> dgamma : array<f32>;
@group(0) @binding(4) var<uniform> h : Hyper;`,
        type: 'vec2<f32>',
        init: 'vec2<f32>(0.0, 0.0)',
        fold: 'acc = acc + vec2<f32>(partials[block * 2 * BN_C + ch], partials[(block * 2 + 1) * BN_C + ch]);',
        merge: '$A + $B',
        write: `dbeta[ch] = acc.x;
    dgamma[ch] = acc.y * inverseSqrt(stats[BN_C + ch] + h.epsilon);`,
      }),
    tensors: [partials, stats, dBeta, dGamma],
    written: [dBeta, dGamma],
    uniforms: [
      { type: 'uint32', data: [plan.blocks] },
      { type: 'uint32', data: [plan.c] },
      { type: 'float32', data: [epsilon] },
    ],
    grid: [plan.c, 1, 1],
    name: 'BatchNormGradSums',
  });
}

/**
 * Row `row` of the [2, C] stats (0: mean, 1: variance) as a [C] tensor; with `old`, blended as
 * momentum * old + (1 - momentum) * row, the moving-average update (1 dispatch).
 */
export function runStatsRow(backend: WebGpuBackendLike, stats: TensorInfo, row: 0 | 1, old?: TensorInfo, momentum = 0): TensorInfo {
  const c = stats.shape[stats.shape.length - 1] ?? 1;
  const program = new StatsRowProgram(c, row, old !== undefined);
  const uniforms: ProgramUniform = [
    { type: 'float32', data: [momentum] },
    { type: 'float32', data: [1 - momentum] },
  ];
  return backend.runWebGPUProgram(program, old ? [old, stats] : [stats], 'float32', uniforms);
}
