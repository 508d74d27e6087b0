import { Command } from 'commander';
import { z } from 'zod';
import { MAX_UNPACKED_BYTES } from '../data/archive.js';
import { downloadDataset, OFFICIAL_URL } from '../data/download.js';
import { CifarError } from '../errors.js';
import { downloadJson, formatDownload } from '../report/download.js';
import { createProgress } from '../report/progress.js';
import { action, flagName } from './run.js';

const Options = z.object({
  dir: z.string().min(1),
  url: z.string().url({ message: 'expected an http(s) URL' }).optional(),
  md5: z
    .string()
    .regex(/^[0-9a-fA-F]{32}$/, { message: 'expected 32 hexadecimal digits' })
    .optional(),
  from: z.string().min(1).optional(),
  maxUnpackedBytes: z
    .string()
    .regex(/^[1-9][0-9]*$/, { message: 'expected a positive whole number of bytes' })
    .transform(Number)
    .optional(),
  force: z.boolean().default(false),
  quiet: z.boolean().default(false),
  json: z.boolean().default(false),
});

export function downloadCommand(): Command {
  return new Command('download')
    .description('download CIFAR-10 (or import an archive or folder) into <dir>/cifar-10-batches-bin, verified and atomic')
    .option('--dir <dir>', 'data directory', 'data')
    .option('--url <url>', `archive URL of a mirror (default ${OFFICIAL_URL})`)
    .option('--md5 <hex>', 'expected md5 of the archive (the published one for the official binary and python archives)')
    .option('--from <path-or-url>', 'a .tar, .tar.gz or .zip (a path or URL), or a folder: the binary release, its python version (cifar-10-batches-py), or an image folder <root>/{train,test}/<class>/*')
    .option('--max-unpacked-bytes <n>', `most bytes the source's files may unpack to, held in memory (default ${MAX_UNPACKED_BYTES}, 4 GiB)`)
    .option('--force', 'redo it even when a valid dataset is present')
    .option('--quiet', 'no progress output')
    .option('--json', 'print one JSON object with the result')
    .action(
      action(async ({ signal }, raw: Record<string, unknown>) => {
        const parsed = Options.safeParse(raw);
        if (!parsed.success) {
          const issue = parsed.error.issues[0]!;
          const key = String(issue.path[0]);
          throw new CifarError('USAGE', `${flagName(key)} ${String(raw[key])}: ${issue.message}`);
        }
        const opts = parsed.data;
        if (opts.from && opts.url) throw new CifarError('USAGE', '--from and --url are two sources: give one');
        const progress = createProgress({
          quiet: opts.quiet,
          bytePhases: ['download', 'checksum', 'read'],
          labels: { download: 'download', checksum: 'md5', read: 'extract', files: 'read', decode: 'decode', write: 'verify' },
        });
        try {
          const result = await downloadDataset({
            ...opts,
            signal,
            onProgress: (phase, done, total) => progress.update(phase, done, total),
            onNote: (message) => progress.note(message),
          });
          progress.stop();
          process.stdout.write(opts.json ? downloadJson(result) : formatDownload(result));
        } finally {
          progress.stop();
        }
      }),
    );
}
