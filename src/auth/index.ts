// Builds the configured access controller and the API hook that asks it, per route, for the
// access the request needs.
import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import type { AuthConfig } from '../config/config.js';
import { checkName } from '../oci/names.js';
import { requiredAccess, type RouteInfo } from './access.js';
import { Throttle, type AccessController, type AuthEndpointRequest } from './controller.js';
import { HtpasswdController } from './htpasswd.js';
import { BearerController, TokenVerifier } from './token.js';
import { TokenServerController } from './tokenserver.js';

export type { AccessController } from './controller.js';

export function createAccessController(config: AuthConfig, log?: Logger, opts: { baseUrl?: string; watch?: boolean } = {}): AccessController {
  const throttle = new Throttle(config.throttle);
  switch (config.mode) {
    case 'htpasswd':
      return new HtpasswdController(config.htpasswd.realm, config.htpasswd.path, throttle, log);
    case 'token': {
      const t = config.token;
      const verifier = TokenVerifier.create({ issuer: t.issuer, service: t.service, rootcertbundle: t.rootcertbundle, jwks: t.jwks });
      const realm = t.autoredirect
        ? (req: IncomingMessage) => {
            const proto = (req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http';
            return `${proto}://${req.headers.host ?? 'localhost'}${t.autoredirectpath}`;
          }
        : t.realm;
      return new BearerController('token', verifier, { realm, service: t.service });
    }
    case 'tokenserver':
      return TokenServerController.create({ ...config.tokenserver, baseUrl: opts.baseUrl }, log, opts.watch ?? true, throttle);
  }
}

/** The request as the API hands it to the hook (Ctx fits). */
export interface HookRequest extends AuthEndpointRequest {
  params: Record<string, string>;
}

/**
 * The API's auth hook: `intercept` serves the controller's own endpoints before routing;
 * `authorize` runs after routing, before the handler.
 */
export class AuthHook {
  constructor(readonly controller: AccessController) {}

  intercept(r: HookRequest): Promise<boolean> {
    return this.controller.serve ? this.controller.serve(r) : Promise.resolve(false);
  }

  async authorize(r: HookRequest): Promise<void> {
    // Grants are per repository name: check the name's grammar before matching it.
    if (r.params.name !== undefined) checkName(r.params.name);
    const route: RouteInfo = { method: r.req.method ?? 'GET', path: r.path, params: r.params, query: r.query };
    const need = requiredAccess(route);
    const challenge = need.mountFrom ? [...need.required, need.mountFrom] : need.required;
    const who = await this.controller.authorize(r.req, need.required, challenge);
    if (route.method === 'POST' && r.query.has('mount')) {
      // A mount links a blob of another repository: only from one the caller may pull. An
      // automatic mount (no `from`) would search every repository, so it is off under auth;
      // either way the request falls back to an ordinary upload.
      if (!need.mountFrom || !who.can(need.mountFrom)) {
        r.query.delete('mount');
        r.query.delete('from');
      }
    }
  }
}
