// libFuzzer target for the RESP command parser. The first byte picks a chunk size; the rest is
// the byte stream. It is parsed twice, whole and in chunks (keeping the unconsumed tail as evloop
// does), and the two runs must agree: same commands, same error. Crashes, sanitizer reports and
// disagreements all abort.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "resp_parser.hpp"

namespace {

// A digest of everything parsed: each command's arguments (length-prefixed), then the error.
std::string run(std::string_view stream, std::size_t chunk) {
  resp::Limits limits;
  limits.max_bulk_bytes = 4096;
  limits.max_array_len = 64;
  limits.max_inline_bytes = 1024;
  resp::CommandParser parser(limits);
  std::string tail;
  std::string digest;
  for (std::size_t at = 0; at < stream.size(); at += chunk) {
    tail.append(stream.substr(at, chunk));
    std::size_t used = 0;
    for (;;) {
      std::string_view in = std::string_view(tail).substr(used);
      resp::ParseResult r = parser.parse(in);
      if (r.status == resp::ParseStatus::error) {
        if (r.error.substr(0, 15) != "Protocol error:") std::abort();
        return digest + "error " + std::string(r.error);
      }
      if (r.status == resp::ParseStatus::incomplete) {
        if (r.consumed != 0) std::abort();
        break;
      }
      if (r.consumed == 0 || r.consumed > in.size() || parser.args().empty()) std::abort();
      for (std::string_view a : parser.args()) {
        digest += std::to_string(a.size()) + ':';
        digest.append(a);
      }
      digest += '\n';
      used += r.consumed;
    }
    tail.erase(0, used);
  }
  return digest + "tail " + std::to_string(tail.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::size_t chunk = data[0] % 16 + 1;
  std::string_view stream(reinterpret_cast<const char*>(data + 1), size - 1);
  if (run(stream, stream.size() + 1) != run(stream, chunk)) std::abort();
  return 0;
}
