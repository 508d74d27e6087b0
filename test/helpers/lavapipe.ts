/**
 * The time limit of a test (or of a hook, or of a child process a test waits for) that runs WebGPU
 * programs on lavapipe, Mesa's CPU Vulkan driver: vitest's `webgpu` and `tensor-cores` projects
 * take it as their default, so that no test there sets a shorter one.
 *
 * lavapipe compiles each new shader through LLVM, 5 to 36 s a program with a cold shader cache (a
 * fresh CI machine) on 2 busy cores. Measured on this project's 2-core machine with a cold cache:
 * at lavapipe's default SIMD width (256 bits) webgpu-kernels and webgpu-matrix took 1,755 s and
 * 795 s and failed 13 tests at limits of 30 to 240 s; at LP_NATIVE_VECTOR_WIDTH=128, which
 * `.ci/run` sets (compiles about 2.5 times faster), the two files took 544 s together, all passing.
 * A limit of minutes, not seconds: a test here fails for a wrong result, not for a slow compiler.
 */
export const LAVAPIPE_TIMEOUT_MS = 900_000;
