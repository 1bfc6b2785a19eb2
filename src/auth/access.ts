// What a request needs: Docker/Distribution access records (`repository:<name>:pull,push`,
// `registry:catalog:*`), derived from the method and the matched route, and their scope
// strings as challenges and token requests spell them.

export interface Access {
  /** `repository` or `registry`. */
  type: string;
  /** Repository name, or `catalog`. */
  name: string;
  /** `pull`, `push`, `delete` or `*`. */
  action: string;
}

/** The parts of a request the mapping looks at (Ctx has them all). */
export interface RouteInfo {
  method: string;
  path: string;
  params: Record<string, string>;
  query: URLSearchParams;
}

export interface RequiredAccess {
  /** Must all be granted. Empty: authentication alone suffices (GET /v2/). */
  required: Access[];
  /** A cross-repository mount source: pull on it is needed to mount, else the mount is skipped. */
  mountFrom?: Access;
}

/**
 * Every route maps to the access it needs: GET/HEAD → pull; POST/PATCH/PUT → pull,push;
 * DELETE → delete (Distribution's `*` is accepted for it, see grants()), except cancelling an
 * upload which is part of pushing; /v2/_catalog → registry:catalog:*; /v2/ → nothing beyond
 * being authenticated.
 */
export function requiredAccess(r: RouteInfo): RequiredAccess {
  const name = r.params.name;
  if (name === undefined) {
    if (/^\/v2\/_catalog$/.test(r.path)) return { required: [{ type: 'registry', name: 'catalog', action: '*' }] };
    return { required: [] };
  }
  const repo = (action: string): Access => ({ type: 'repository', name, action });
  switch (r.method) {
    case 'GET':
    case 'HEAD':
      return { required: [repo('pull')] };
    case 'DELETE':
      // DELETE /v2/<name>/blobs/uploads/<uuid> cancels one's own upload: a push action.
      if (r.params.uuid !== undefined) return { required: [repo('pull'), repo('push')] };
      return { required: [repo('delete')] };
    default: {
      const out: RequiredAccess = { required: [repo('pull'), repo('push')] };
      const from = r.method === 'POST' ? r.query.get('from') : null;
      if (from !== null && r.query.get('mount') !== null) out.mountFrom = { type: 'repository', name: from, action: 'pull' };
      return out;
    }
  }
}

/** `repository:a:pull,push repository:b:pull` — one entry per resource, actions joined. */
export function scopeString(access: Access[]): string {
  const byResource = new Map<string, string[]>();
  for (const a of access) {
    const key = `${a.type}:${a.name}`;
    const actions = byResource.get(key) ?? [];
    if (!actions.includes(a.action)) actions.push(a.action);
    byResource.set(key, actions);
  }
  return [...byResource].map(([k, actions]) => `${k}:${actions.join(',')}`).join(' ');
}

/**
 * Parses scope parameters (`repository:name:pull,push`, several per string separated by
 * spaces, or several parameters). A name may contain a port-qualified host with ':', so the
 * type is the first field and the actions the last.
 */
export function parseScopes(scopes: string[]): { type: string; name: string; actions: string[] }[] {
  const out: { type: string; name: string; actions: string[] }[] = [];
  for (const s of scopes.flatMap((x) => x.split(' ')).filter(Boolean)) {
    const first = s.indexOf(':');
    const last = s.lastIndexOf(':');
    if (first <= 0 || last === first) continue;
    const type = s.slice(0, first);
    let name = s.slice(first + 1, last);
    // Docker's type may carry a class: `repository(plugin)`.
    const t = type.replace(/\(.*\)$/, '');
    const actions = s.slice(last + 1).split(',').filter(Boolean);
    if (!name || actions.length === 0) continue;
    if (name.length > 512) name = name.slice(0, 512);
    out.push({ type: t, name, actions });
  }
  return out;
}

/** A set of granted access entries as the JWT `access` claim holds them. */
export interface GrantEntry {
  type: string;
  name: string;
  actions: string[];
}

/** Whether `grants` covers `a`. Actions match exactly, except that `*` also grants `delete`. */
export function grants(entries: readonly GrantEntry[], a: Access): boolean {
  for (const e of entries) {
    if (e.type !== a.type || e.name !== a.name || !Array.isArray(e.actions)) continue;
    if (e.actions.includes(a.action)) return true;
    if (a.action === 'delete' && e.actions.includes('*')) return true;
  }
  return false;
}
