// set-property: resource limits of a machine (src/runtime/properties.ts parses them,
// src/runtime/cgroups.ts applies them). Like `systemctl set-property`, a change applies to the
// running machine and is stored for its next start, unless --runtime (running machine only).
// Every assignment is checked before anything changes; a property this host cannot enforce is
// refused before the running machine or the stored file is touched.
import { ConfigError } from '../errors.js';
import { MachineCgroup } from '../runtime/cgroups.js';
import type { ImageStore } from '../runtime/images.js';
import { HintedConfigError, machineNameProblem, MACHINE_NAME_RULES } from '../runtime/machine-name.js';
import { formatProperties, parseProperties, saveProperties, type ResourceProperties } from '../runtime/properties.js';
import type { MachineRegistry } from '../runtime/registry.js';
import { MachineError } from './control.js';
import { machineCgroupState } from './info.js';

export interface SetPropertyResult {
  /** applied to the running machine */
  runtime: boolean;
  /** stored for later starts: the machine's stored properties after the change */
  stored?: string[];
  /** effective on the running machine after the change */
  effective?: string[];
}

export function setProperty(
  registry: MachineRegistry, images: ImageStore, name: string, assignments: readonly string[],
  opts: { runtime: boolean; propertiesDir?: string },
): SetPropertyResult {
  const problem = machineNameProblem(name);
  if (problem !== undefined) throw new HintedConfigError(`Invalid machine name: ${name}`, `${problem}; ${MACHINE_NAME_RULES}`, 'CFG_MACHINE_NAME');
  const props: ResourceProperties = parseProperties(assignments, 'set-property');
  if (Object.keys(props).length === 0) throw new ConfigError('set-property: no PROPERTY=VALUE given', { code: 'CFG_PROPERTY_SYNTAX' });

  const record = registry.get(name);
  if (!record && opts.runtime) {
    throw new MachineError('MACHINE_NOT_FOUND', `No machine '${name}' known (--runtime changes a running machine only)`);
  }
  if (!record && !images.find(name)) {
    throw new MachineError('MACHINE_NOT_FOUND', `No machine or image '${name}' known (looked in the running machines and in ${images.searchPath.join(', ')})`);
  }

  const result: SetPropertyResult = { runtime: false };
  if (record) {
    const state = machineCgroupState(record, opts.propertiesDir ? { propertiesDir: opts.propertiesDir } : {});
    if (!state) {
      throw new MachineError('MACHINE_NO_CGROUP', `Machine '${name}' runs without a cgroup of its own (its launcher did not create one), so its limits cannot be changed while it runs` +
        (opts.runtime ? '' : `; set them without the running machine: stop it, then 'machinectl-ts set-property ${name} …' and start it again`));
    }
    const cg = MachineCgroup.open(state);
    cg.update(props);
    const after = cg.toJSON();
    registry.update(name, { cgroup: after });
    result.runtime = true;
    result.effective = after.properties;
  }
  if (!opts.runtime) {
    result.stored = formatProperties(saveProperties(name, props, opts.propertiesDir ? { dir: opts.propertiesDir } : {}));
  }
  return result;
}
