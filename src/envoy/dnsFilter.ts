// Envoy's DNS filter (envoy.filters.udp.dns_filter) answering an A query from its inline
// table, as a pure function, written from source/extensions/filters/udp/dns_filter/
// dns_filter.cc (DnsFilterEnvoyConfig's constructor, getResponseForQuery,
// resolveViaClusters, getEndpointConfigForDomain) and dns_filter_utils (getDomainSuffix:
// the last two labels; getVirtualDomainName: "*.x" is stored as ".x"):
//   1. without client_config nothing is forwarded; a name is answered from the table only;
//   2. a query whose name is a cluster's name, or a table entry naming a cluster, is
//      answered with that cluster's hosts (resolveViaClusters, tried first);
//   3. else the entries under the query's suffix (last two labels) are searched for the
//      name itself, then for each ".suffix" of it from the left (so ".x", stored for
//      "*.x", answers every depth below x); the first found answers with its addresses;
//   4. no address: no answer, response code NXDOMAIN (name error).
// A wildcard whose base is one label ("*.com", stored ".com" under suffix ".com") is never
// found: a query's suffix is two labels. Names are compared as sent (the generated table is
// lower case; resolvers send what the program asked for).

export interface DnsTableJson {
  virtualDomains?: { name: string; endpoint: { addressList?: { address: string[] }; clusterName?: string }; answerTtl?: string }[];
}

export type DnsAnswer = { readonly rcode: 'NOERROR'; readonly addresses: readonly string[] } | { readonly rcode: 'NXDOMAIN' };

/** dns_filter_utils getDomainSuffix: up to the last two labels. */
export function domainSuffix(name: string): string {
  const labels = name.split('.');
  return labels.slice(-2).join('.');
}

/** dns_filter_utils getVirtualDomainName: a wildcard "*.x" is kept as ".x". */
export const virtualDomainName = (name: string): string => (name.startsWith('*.') ? name.slice(1) : name);

/**
 * The answer to an A query for `name`. `clusterHosts`: the IPv4 hosts of each cluster the
 * node has (only clusters named by the table or by the query matter).
 */
export function answerQuery(table: DnsTableJson, name: string, clusterHosts: ReadonlyMap<string, readonly string[]> = new Map()): DnsAnswer {
  const bySuffix = new Map<string, Map<string, { addresses?: string[]; cluster?: string }>>();
  for (const domain of table.virtualDomains ?? []) {
    const virtual = virtualDomainName(domain.name);
    const suffix = domainSuffix(virtual);
    let entries = bySuffix.get(suffix);
    if (!entries) bySuffix.set(suffix, (entries = new Map()));
    const existing = entries.get(virtual);
    if (domain.endpoint.addressList) {
      if (existing?.addresses) existing.addresses.push(...domain.endpoint.addressList.address);
      else if (!existing) entries.set(virtual, { addresses: [...domain.endpoint.addressList.address] });
    } else if (domain.endpoint.clusterName && !existing) {
      entries.set(virtual, { cluster: domain.endpoint.clusterName });
    }
  }
  const entryFor = (query: string) => {
    const entries = bySuffix.get(domainSuffix(query));
    if (!entries) return undefined;
    for (let pos = 0; pos !== -1; pos = query.indexOf('.', pos + 1)) {
      const found = entries.get(query.slice(pos));
      if (found) return found;
    }
    return undefined;
  };
  const ipv4 = (addresses: readonly string[]): string[] => addresses.filter((a) => /^\d+\.\d+\.\d+\.\d+$/.test(a));
  // resolveViaClusters: the entry's cluster, else a cluster named like the query.
  const entry = entryFor(name);
  const cluster = entry?.cluster ?? name;
  const hosts = ipv4(clusterHosts.get(cluster) ?? []);
  if (hosts.length > 0) return { rcode: 'NOERROR', addresses: hosts };
  if (entry?.addresses) {
    const addresses = ipv4(entry.addresses);
    if (addresses.length > 0) return { rcode: 'NOERROR', addresses };
  }
  return { rcode: 'NXDOMAIN' };
}
