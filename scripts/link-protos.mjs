// buf reads Envoy's protos from the npm dependency through symlinks under
// proto/deps (git-ignored): nothing third-party is copied into the repo.
import { mkdirSync, rmSync, symlinkSync, existsSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const depsRoot = join(dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');
const linkDir = resolve('proto/deps');
rmSync(linkDir, { recursive: true, force: true });
mkdirSync(linkDir, { recursive: true });
for (const module of ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate']) {
  const target = join(depsRoot, module);
  if (!existsSync(target)) throw new Error(`missing ${target}: is @grpc/grpc-js-xds installed?`);
  symlinkSync(relative(linkDir, target), join(linkDir, module));
}
