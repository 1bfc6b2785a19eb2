// The token server's access policy: a YAML file of groups and rules. Subjects are
// `user:<name>`, `group:<name>`, `authenticated` (any user with a valid password) and
// `anonymous` (everyone, credentials or not). Repositories are glob patterns: `*` and `?`
// stay within one path segment, `**` crosses segments (`team-a/**`). Actions: pull, push,
// delete, `*` (all of them). `catalog: true` grants `registry:catalog:*`.
import { readFileSync } from 'node:fs';
import YAML from 'yaml';
import { z } from 'zod';
import { ConfigError } from '../config/config.js';

const ACTIONS = ['pull', 'push', 'delete', '*'] as const;

const policySchema = z
  .object({
    groups: z.record(z.array(z.string().min(1))).default({}),
    access: z
      .array(
        z
          .object({
            subjects: z.array(z.string().regex(/^(user:.+|group:.+|anonymous|authenticated)$/, 'a subject is user:<name>, group:<name>, authenticated or anonymous')).min(1),
            repositories: z.array(z.string().min(1)).default([]),
            actions: z.array(z.enum(ACTIONS)).default([]),
            catalog: z.boolean().default(false),
          })
          .strict(),
      )
      .default([]),
  })
  .strict();

interface Rule {
  subjects: Set<string>;
  patterns: RegExp[];
  actions: Set<string>;
  catalog: boolean;
}

/** A glob over repository names as an anchored regular expression. */
export function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*' && glob[i + 1] === '*') {
      re += '.*';
      i++;
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

export class Policy {
  private constructor(
    private readonly rules: Rule[],
    private readonly groupsOf: Map<string, string[]>,
  ) {}

  static parse(text: string, file: string): Policy {
    let raw: unknown;
    try {
      raw = YAML.parse(text) ?? {};
    } catch (err) {
      throw new ConfigError(`config: access policy ${file} is not valid YAML: ${(err as Error).message.split('\n')[0]}`);
    }
    const parsed = policySchema.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new ConfigError(`config: access policy ${file}: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
    }
    const groupsOf = new Map<string, string[]>();
    for (const [group, members] of Object.entries(parsed.data.groups)) {
      for (const m of members) groupsOf.set(m, [...(groupsOf.get(m) ?? []), group]);
    }
    const rules = parsed.data.access.map((r) => ({
      subjects: new Set(r.subjects),
      patterns: r.repositories.map(globToRegExp),
      actions: new Set<string>(r.actions.includes('*') ? ACTIONS : r.actions),
      catalog: r.catalog,
    }));
    return new Policy(rules, groupsOf);
  }

  static read(file: string): Policy {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError(`config: cannot read access policy ${file}: ${(err as Error).message}`);
    }
    return Policy.parse(text, file);
  }

  private subjectsOf(user: string | null): Set<string> {
    const s = new Set(['anonymous']);
    if (user !== null) {
      s.add('authenticated');
      s.add(`user:${user}`);
      for (const g of this.groupsOf.get(user) ?? []) s.add(`group:${g}`);
    }
    return s;
  }

  /** The actions among `requested` that `user` (null: anonymous) may take on a resource. */
  allowed(user: string | null, type: string, name: string, requested: string[]): string[] {
    const subjects = this.subjectsOf(user);
    const granted = new Set<string>();
    for (const rule of this.rules) {
      if (![...rule.subjects].some((s) => subjects.has(s))) continue;
      if (type === 'registry' && name === 'catalog') {
        if (rule.catalog) granted.add('*');
        continue;
      }
      if (type !== 'repository' || !rule.patterns.some((p) => p.test(name))) continue;
      for (const a of rule.actions) granted.add(a);
    }
    return [...new Set(requested)].filter((a) => granted.has(a));
  }
}
