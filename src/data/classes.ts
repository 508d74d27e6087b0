/** The ten CIFAR-10 classes in the official label order (label i is CLASSES[i]). */
export const CLASSES = [
  'airplane',
  'automobile',
  'bird',
  'cat',
  'deer',
  'dog',
  'frog',
  'horse',
  'ship',
  'truck',
] as const;

export type ClassName = (typeof CLASSES)[number];

export function classIndex(name: string): number {
  return (CLASSES as readonly string[]).indexOf(name);
}
