// Addresses that no geo database can place: private, loopback, link-local, shared (CGNAT), documentation,
// multicast and other special-purpose ranges. Built once; checked only on a geo cache miss.
import { BlockList } from 'node:net';

const RANGES: readonly (readonly [string, number, 'ipv4' | 'ipv6'])[] = [
  ['0.0.0.0', 8, 'ipv4'], // "this network"
  ['10.0.0.0', 8, 'ipv4'],
  ['100.64.0.0', 10, 'ipv4'], // shared address space (CGNAT)
  ['127.0.0.0', 8, 'ipv4'],
  ['169.254.0.0', 16, 'ipv4'],
  ['172.16.0.0', 12, 'ipv4'],
  ['192.0.0.0', 24, 'ipv4'], // IETF protocol assignments
  ['192.0.2.0', 24, 'ipv4'], // documentation (TEST-NET-1..3)
  ['198.51.100.0', 24, 'ipv4'],
  ['203.0.113.0', 24, 'ipv4'],
  ['192.168.0.0', 16, 'ipv4'],
  ['198.18.0.0', 15, 'ipv4'], // benchmarking
  ['224.0.0.0', 3, 'ipv4'], // multicast, reserved and broadcast up to 255.255.255.255
  ['::', 127, 'ipv6'], // unspecified and loopback
  ['100::', 64, 'ipv6'], // discard-only
  ['2001:db8::', 32, 'ipv6'], // documentation
  ['fc00::', 7, 'ipv6'], // unique local
  ['fe80::', 10, 'ipv6'], // link-local
  ['ff00::', 8, 'ipv6'], // multicast
];

const blockList = new BlockList();
for (const [network, prefix, family] of RANGES) blockList.addSubnet(network, prefix, family);

/** Whether a valid address of family 4 or 6 (as net.isIP says) is private or reserved; IPv4-mapped IPv6 counts as IPv4. */
export function isPrivateAddress(ip: string, family: number): boolean {
  return blockList.check(ip, family === 4 ? 'ipv4' : 'ipv6');
}
