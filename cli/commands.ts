/** Every subcommand `ballast` dispatches to. Only commands that work are listed here. */
import type { Command } from './command.ts';
import { clusterCommand } from './cluster.ts';
import { kubeletCommand } from './kubelet.ts';
import { operatorCommand } from './operator.ts';
import { sidecarCommand } from './sidecar.ts';
import { storeCommand } from './store.ts';
import { versionCommand } from './version.ts';

export const commands: readonly Command[] = [clusterCommand, kubeletCommand, operatorCommand, sidecarCommand, storeCommand, versionCommand];
