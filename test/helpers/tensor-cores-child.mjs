// Run by test/backend/webgpu-tensor-cores.test.ts in a process of its own, whose Vulkan driver
// offers subgroup matrices (CIFAR_SUBGROUP_MATRIX_NODE, scripts/lavapipe-subgroup-matrix.sh):
// starts the webgpu backend as CIFAR_WEBGPU_MATMUL asks (its start-up check included), then runs
// each case of the input file (dW, dx, conv2d, fused conv2d, with the case's kernel settings) and
// the loss and gradients of its small ResNet (given weights, images and labels), then bench:gpu's
// subgroup-matrix load probe, and writes what the backend said and the results as JSON.
//   node test/helpers/tensor-cores-child.mjs IN.json OUT.json
import { readFileSync, writeFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../../dist/backend/index.js';
import { buildModel } from '../../dist/model/resnet.js';
import { matmulFallback, matrixHardwareSide, matrixSubgroupSize, matrixSyntax } from '../../dist/backend/webgpu-kernels/matrix.js';
import { describeProbe, runMatrixProbe } from '../../dist/backend/webgpu-kernels/matrix-probe.js';
import { configureWebGpuKernels, webGpuKernelSettings } from '../../dist/backend/webgpu-kernels/settings.js';

const [input, output] = process.argv.slice(2);
const { cases, resnet } = JSON.parse(readFileSync(input, 'utf8'));
const started = await initBackend('webgpu');
const report = {
  name: started.name,
  detail: started.detail ?? started.reason,
  matmul: webGpuKernelSettings().matmul,
  matmulScope: webGpuKernelSettings().matmulScope,
  fallback: matmulFallback() ?? null,
  side: matrixHardwareSide(),
  subgroupSize: matrixSubgroupSize(),
  results: [],
  resnet: [],
  probe: null,
};
if (started.name === 'webgpu' && report.matmul === 'tensor-cores') {
  const base = webGpuKernelSettings();
  for (const c of cases) {
    // Every kernel, the gradients included, whatever the start-up check decided.
    configureWebGpuKernels({ ...base, matmulScope: 'all', ...c.settings });
    const attrs = { strides: c.stride, pad: c.pad, dataFormat: 'NHWC' };
    const outs = tf.tidy(() => {
      const [x, dy, w] = [tf.tensor4d(c.x, c.xShape), tf.tensor4d(c.dy, c.dyShape), tf.tensor4d(c.w, c.wShape)];
      return [
        tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, { ...attrs, filterShape: c.wShape }),
        tf.engine().runKernel('Conv2DBackpropInput', { dy, filter: w }, { ...attrs, inputShape: c.xShape }),
        tf.conv2d(x, w, c.stride, c.pad),
        tf.fused.conv2d({ x, filter: w, strides: c.stride, pad: c.pad, bias: tf.tensor1d(c.b), activation: 'relu' }),
      ];
    });
    report.results.push(await Promise.all(outs.map(async (t) => Array.from(await t.data()))));
    tf.dispose(outs);
  }
  // The whole ResNet: training-mode loss and the gradients of every trainable weight.
  configureWebGpuKernels({ ...base, matmulScope: 'all' });
  const model = buildModel({ baseWidth: resnet.baseWidth, blocks: [1, 1, 1, 1] });
  model.setWeights(resnet.weights.map((w) => tf.tensor(w.values, w.shape)));
  const outs = tf.tidy(() => {
    const x = tf.tensor4d(resnet.xs, [resnet.labels.length, 32, 32, 3]);
    const y = tf.oneHot(tf.tensor1d(resnet.labels, 'int32'), 10);
    const loss = () => tf.losses.softmaxCrossEntropy(y, model.apply(x, { training: true }));
    const { value, grads } = tf.variableGrads(loss, model.trainableWeights.map((w) => w.read()));
    return [value, ...Object.values(grads)];
  });
  report.resnet = await Promise.all(outs.map(async (t) => Array.from(await t.data())));
  tf.dispose(outs);
  // bench:gpu's load probe, with the real operations at the device's side.
  const probe = await runMatrixProbe(tf.backend().device, matrixSyntax(), { side: matrixHardwareSide() });
  report.probe = { cases: probe.length, failed: describeProbe(probe) };
}
writeFileSync(output, JSON.stringify(report));
process.exit(0);
