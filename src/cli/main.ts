import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { downloadCommand } from './download.js';
import { notBuiltCommand } from './not-built.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

/** The `cifar` program: one subcommand per file in src/cli/. */
export function buildProgram(): Command {
  return new Command('cifar')
    .description('CIFAR-10 from raw data to a monitored production API')
    .version(pkg.version)
    .showHelpAfterError('(run `cifar help` for the list of commands and flags)')
    .exitOverride()
    .addCommand(downloadCommand())
    .addCommand(notBuiltCommand('train', 'train a model'))
    .addCommand(notBuiltCommand('eval', 'evaluate a model on the test split'))
    .addCommand(notBuiltCommand('predict', 'classify images offline'))
    .addCommand(notBuiltCommand('serve', 'serve the prediction API'))
    .addCommand(notBuiltCommand('bench', 'load-test the prediction API'));
}

async function main(): Promise<void> {
  const program = buildProgram();
  for (const cmd of program.commands) cmd.exitOverride();
  try {
    await program.parseAsync(process.argv);
  } catch (err) {
    // Commander has already printed its one-line message; usage errors exit 2, help/version 0.
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode === 0 ? 0 : 2;
      return;
    }
    throw err;
  }
}

await main();
