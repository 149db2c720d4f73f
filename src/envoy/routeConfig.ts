// TypeScript shapes for the ProtoJSON subset of Envoy's HTTP routing
// (envoy.config.route.v3) that egress-xds writes and models in routeMatch.ts.
// The strict ProtoJSON parse in codec.ts checks them against Envoy's protos.

/** envoy.type.matcher.v3.StringMatcher: exactly one of the match kinds. */
export interface StringMatcherJson {
  exact?: string;
  prefix?: string;
  suffix?: string;
  contains?: string;
  safeRegex?: { regex: string };
  ignoreCase?: boolean;
}

/** envoy.config.route.v3.HeaderMatcher, the match kinds egress-xds writes or models. */
export interface HeaderMatcherJson {
  name: string;
  exactMatch?: string;
  safeRegexMatch?: { regex: string };
  presentMatch?: boolean;
  prefixMatch?: string;
  suffixMatch?: string;
  containsMatch?: string;
  stringMatch?: StringMatcherJson;
  invertMatch?: boolean;
  treatMissingHeaderAsEmpty?: boolean;
}

/** envoy.config.route.v3.RouteMatch: one path specifier, then headers. */
export interface RouteMatchJson {
  prefix?: string;
  path?: string;
  safeRegex?: { regex: string };
  pathSeparatedPrefix?: string;
  connectMatcher?: Record<string, never>;
  caseSensitive?: boolean;
  headers?: HeaderMatcherJson[];
}

export interface UpgradeConfigJson {
  upgradeType: string;
  enabled?: boolean;
  /** Route-level CONNECT only: terminate CONNECT and send the payload as raw TCP. */
  connectConfig?: Record<string, unknown>;
}

export interface RouteActionJson {
  cluster: string;
  upgradeConfigs?: UpgradeConfigJson[];
  timeout?: string;
  idleTimeout?: string;
}

export interface DirectResponseJson {
  status: number;
  body?: { inlineString: string };
}

export interface RouteJson {
  name?: string;
  match: RouteMatchJson;
  route?: RouteActionJson;
  directResponse?: DirectResponseJson;
}

export interface VirtualHostJson {
  name: string;
  domains: string[];
  routes: RouteJson[];
}

export interface RouteConfigurationJson {
  name?: string;
  virtualHosts: VirtualHostJson[];
  ignorePortInHostMatching?: boolean;
  validateClusters?: boolean;
}
