#include "wasentinel/common/ip_address.h"

#include <arpa/inet.h>

#include <cstdint>
#include <cstring>
#include <string>

namespace wasentinel {
namespace {

bool PublicV4(const uint8_t* a) {
  const uint32_t ip =
      (uint32_t{a[0]} << 24) | (uint32_t{a[1]} << 16) | (uint32_t{a[2]} << 8) | a[3];
  auto in = [ip](uint32_t net, int bits) { return (ip >> (32 - bits)) == (net >> (32 - bits)); };
  return !(in(0x00000000, 8) ||   // 0/8 "this network"
           in(0x0A000000, 8) ||   // 10/8
           in(0x64400000, 10) ||  // 100.64/10 shared address space (CGNAT)
           in(0x7F000000, 8) ||   // 127/8 loopback
           in(0xA9FE0000, 16) ||  // 169.254/16 link-local
           in(0xAC100000, 12) ||  // 172.16/12
           in(0xC0000000, 24) ||  // 192.0.0/24 IETF protocol assignments
           in(0xC0000200, 24) ||  // 192.0.2/24 TEST-NET-1
           in(0xC0586300, 24) ||  // 192.88.99/24 6to4 relay anycast
           in(0xC0A80000, 16) ||  // 192.168/16
           in(0xC6120000, 15) ||  // 198.18/15 benchmarking
           in(0xC6336400, 24) ||  // 198.51.100/24 TEST-NET-2
           in(0xCB007100, 24) ||  // 203.0.113/24 TEST-NET-3
           in(0xE0000000, 4) ||   // 224/4 multicast
           in(0xF0000000, 4));    // 240/4 reserved, 255.255.255.255
}

bool Prefix(const uint8_t* a, std::initializer_list<uint8_t> bytes) {
  return std::memcmp(a, bytes.begin(), bytes.size()) == 0;
}

}  // namespace

bool IsPublicAddress(std::string_view text) {
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']') {
    text = text.substr(1, text.size() - 2);
  }
  if (text.empty() || text.size() > 64) return false;
  const std::string ip(text);
  uint8_t a[16];
  if (inet_pton(AF_INET, ip.c_str(), a) == 1) return PublicV4(a);
  if (inet_pton(AF_INET6, ip.c_str(), a) != 1) return false;
  if (Prefix(a, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff})) return PublicV4(a + 12);  // mapped
  if (Prefix(a, {0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0})) return PublicV4(a + 12);
  if (Prefix(a, {0x20, 0x02})) return PublicV4(a + 2);            // 6to4: 2002:AABB:CCDD::/48
  if ((a[0] & 0xe0) != 0x20) return false;                        // outside 2000::/3 global unicast
  if (a[0] == 0x20 && a[1] == 0x01 && a[2] < 0x02) return false;  // 2001::/23
  if (Prefix(a, {0x20, 0x01, 0x0d, 0xb8})) return false;          // 2001:db8::/32
  if (a[0] == 0x3f && a[1] == 0xff && (a[2] & 0xf0) == 0) return false;  // 3fff::/20
  return true;
}

}  // namespace wasentinel
