import { Command, CommanderError } from 'commander';
import { downloadCommand } from './download.js';
import { trainCommand } from './train.js';
import { evalCommand } from './eval.js';
import { predictCommand } from './predict.js';
import { serveCommand } from './serve.js';
import { benchCommand } from './bench.js';
import { dashboardCommand } from './dashboard.js';
import { loadServingPredictor } from '../model/load.js';
import { reportError } from './run.js';
import { exitCodeFor } from '../errors.js';
import { PACKAGE_VERSION } from './defaults.js';

/** The `cifar` program: one subcommand per file in src/cli/. */
export function buildProgram(): Command {
  return new Command('cifar')
    .description('CIFAR-10 from raw data to a monitored production API')
    .version(PACKAGE_VERSION)
    .showHelpAfterError('(run `cifar help` for the list of commands and flags)')
    .exitOverride()
    .addCommand(downloadCommand())
    .addCommand(trainCommand())
    .addCommand(evalCommand())
    .addCommand(predictCommand())
    .addCommand(serveCommand((dir, backend, options) => loadServingPredictor(dir, backend ?? 'auto', options)))
    .addCommand(benchCommand())
    .addCommand(dashboardCommand());
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
    // A flag parser's own error (e.g. --epochs abc) arrives here, outside any action.
    reportError(err);
    process.exitCode = exitCodeFor(err);
  }
}

await main();
