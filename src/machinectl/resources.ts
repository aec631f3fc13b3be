// set-property: resource limits of a machine (src/runtime/properties.ts parses them,
// src/runtime/cgroups.ts applies them). Like `systemctl set-property`, a change applies to the
// running machine and is stored for its next start, unless --runtime (running machine only).
// Every assignment is checked before anything changes; a property this host cannot enforce is
// refused before the running machine or the stored file is touched.
import { ConfigError } from '../errors.js';
import { readFileSync, writeFileSync } from 'node:fs';
import { cgroupFsPath, detectLayout, MachineCgroup, parseProcCgroup } from '../runtime/cgroups.js';
import { DEVICE_ALLOW, deviceAllowRules } from '../runtime/container-cgroup.js';
import type { ImageStore } from '../runtime/images.js';
import { HintedConfigError, machineNameProblem, MACHINE_NAME_RULES } from '../runtime/machine-name.js';
import { formatProperties, parseProperties, type ResourceProperties } from '../runtime/properties.js';
import { saveProperties } from '../runtime/property-store.js';
import type { MachineRecord, MachineRegistry } from '../runtime/registry.js';
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

export async function setProperty(
  registry: MachineRegistry, images: ImageStore, name: string, assignments: readonly string[],
  opts: { runtime: boolean; propertiesDir?: string },
): Promise<SetPropertyResult> {
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
    // DeviceAllow= is checked before anything changes: a class or node this host lacks is refused
    const devices = deviceAllowRules(props.DeviceAllow);
    if (devices.warnings.length > 0) throw new ConfigError(`set-property: ${devices.warnings.join('; ')}`, { code: 'CFG_PROPERTY_VALUE' });
    const cg = MachineCgroup.open(state);
    cg.update(props);
    if (props.DeviceAllow) allowDevices(record, props.DeviceAllow.reset, devices.rules);
    const after = cg.toJSON();
    await registry.update(name, { cgroup: after });
    result.runtime = true;
    result.effective = after.properties;
  }
  if (!opts.runtime) {
    result.stored = formatProperties(saveProperties(name, props, opts.propertiesDir ? { dir: opts.propertiesDir } : {}));
  }
  return result;
}

/**
 * Adds devices to a running machine's devices cgroup (v1: the leader's); a reset first denies all
 * and allows the standard set again, as a start would.
 */
function allowDevices(record: MachineRecord, reset: boolean, rules: readonly string[]): void {
  const leader = record.leader?.pid;
  const h = detectLayout().hierarchies.find((x) => x.version === 1 && x.controllers.includes('devices'));
  if (leader === undefined || !h) {
    throw new MachineError('MACHINE_NO_CGROUP', `Machine '${record.name}' has no devices cgroup here, so DeviceAllow= cannot change while it runs`);
  }
  const entry = parseProcCgroup(readFileSync(`/proc/${leader}/cgroup`, 'utf8')).find((e) => e.controllers.includes('devices'));
  const dir = entry ? cgroupFsPath(h, entry.path) : undefined;
  if (dir === undefined) throw new MachineError('MACHINE_NO_CGROUP', `Machine '${record.name}': its leader's devices cgroup is not visible here`);
  if (reset) {
    writeFileSync(`${dir}/devices.deny`, 'a');
    for (const r of DEVICE_ALLOW) writeFileSync(`${dir}/devices.allow`, r);
  }
  for (const r of rules) writeFileSync(`${dir}/devices.allow`, r);
}
