// Stands in for sharp in the bench-gpu bundle, which never decodes images: the GPU host then
// needs no libvips. Anything that does call it fails loudly.
module.exports = function sharp() {
  throw new Error('sharp is not in this bundle (bench-gpu only); use the CLI bundle, cli/cifar.mjs');
};
