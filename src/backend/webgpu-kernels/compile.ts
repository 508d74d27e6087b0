/**
 * Compiling a model's WebGPU programs all at once, in parallel, before they are first used.
 *
 * tfjs-backend-webgpu compiles each program the first time it runs, one after another on the
 * main thread: the first ResNet-18 training step on the H100 took 12 s longer than the others
 * (about 110 programs). With its `WEBGPU_ENGINE_COMPILE_ONLY` flag set, running ops only creates
 * their pipelines, asynchronously (Dawn compiles on worker threads), and records no work;
 * `checkCompileCompletionAsync` waits for all of them. On lavapipe (2 cores) the compilation of a
 * ResNet-18 step fell from 2.7 s to 0.7 s. Our in-place dispatches (in-place.ts) follow the flag
 * too: theirs are compiled in the background and waited for here.
 *
 * Every program must be: lavapipe compiles a pipeline to machine code when it first runs, on its
 * queue's thread, and a pipeline created synchronously after work was submitted waits for that
 * thread. A step that made even one program itself (the fused loss, the SGD update) held the
 * JavaScript thread for the whole compilation of the step's other programs: 54.6 s on the 2-core
 * machine with a cold shader cache, against 0.08 s when all had been made before (measured
 * 2026-11-29, a small ResNet's step of 122 programs).
 */
import * as tf from '@tensorflow/tfjs';
import { inPlaceCompilation, inPlaceProgramCount } from './in-place.js';

interface CompilingBackend {
  checkCompileCompletionAsync(): Promise<void>;
  pipelineCache: Record<string, unknown>;
}

function compilingBackend(): CompilingBackend | undefined {
  if (tf.getBackend() !== 'webgpu') return undefined;
  const b = tf.backend() as unknown as Partial<CompilingBackend>;
  return typeof b.checkCompileCompletionAsync === 'function' && b.pipelineCache !== undefined ? (b as CompilingBackend) : undefined;
}

/**
 * Programs compiled (or being compiled) on the active webgpu backend, tfjs' and our in-place
 * ones (in-place.ts); 0 on other backends.
 */
export function compiledProgramCount(): number {
  const b = compilingBackend();
  return b ? Object.keys(b.pipelineCache).length + inPlaceProgramCount() : 0;
}

/**
 * Runs `ops` with tfjs' compile-only flag, so that the programs they would dispatch are compiled
 * in parallel and none runs, and waits for the compilation. Its tensors are disposed of; what ops
 * assigned to variables holds nothing computed, so `ops` must not change state that outlives it
 * (or the caller puts it back). Returns the number of programs it added; 0, running nothing, on
 * a backend other than webgpu.
 * @example await compileInParallel(() => { model.apply(x, { training: true }); });
 */
export async function compileInParallel(ops: () => void): Promise<number> {
  const b = compilingBackend();
  if (!b) return 0;
  const before = compiledProgramCount();
  tf.env().set('WEBGPU_ENGINE_COMPILE_ONLY', true);
  try {
    tf.tidy(ops);
  } finally {
    tf.env().set('WEBGPU_ENGINE_COMPILE_ONLY', false);
  }
  await Promise.all([b.checkCompileCompletionAsync(), inPlaceCompilation()]);
  return compiledProgramCount() - before;
}
