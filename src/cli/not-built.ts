import { Command } from 'commander';
import { CifarError } from '../errors.js';
import { action } from './run.js';

/**
 * A subcommand that is planned but not written yet: it says so and exits 2, so no script
 * mistakes it for a working one.
 */
export function notBuiltCommand(name: string, description: string): Command {
  return new Command(name)
    .description(`${description} (not built yet)`)
    .allowUnknownOption()
    .allowExcessArguments()
    .helpOption(false)
    .action(
      action(async () => {
        throw new CifarError('NOT_BUILT', `\`cifar ${name}\` is not built yet in this version`);
      }),
    );
}
