// libFuzzer target for the HTTP request parser. The first byte picks a chunk size; the rest is
// the byte stream. It is parsed twice, whole and in chunks (keeping the unconsumed tail as evloop
// does), and the two runs must agree: same requests, same error. Crashes, sanitizer reports and
// disagreements all abort.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "http_parser.hpp"

namespace {

// A digest of everything parsed: each request's fields, then the error status.
std::string run(std::string_view stream, std::size_t chunk) {
  httpd::Limits limits;
  limits.max_head_bytes = 512;  // small enough for the fuzzer's inputs to reach it (414, 431)
  limits.max_body_bytes = 1024;
  httpd::RequestParser parser(limits);
  std::string tail;
  std::string digest;
  for (std::size_t at = 0; at < stream.size(); at += chunk) {
    tail.append(stream.substr(at, chunk));
    std::size_t used = 0;
    for (;;) {
      std::string_view in = std::string_view(tail).substr(used);
      httpd::ParseResult r = parser.parse(in);
      if (r.status == httpd::ParseStatus::error) {
        if (r.error_status < 400 || r.error_status > 505) std::abort();
        return digest + "error " + std::to_string(r.error_status);
      }
      if (r.status == httpd::ParseStatus::incomplete) {
        if (r.consumed != 0) std::abort();
        break;
      }
      if (r.consumed == 0 || r.consumed > in.size()) std::abort();
      const httpd::Request& q = parser.request();
      digest += std::string(httpd::method_name(q.method)) + ' ' + std::string(q.target) + ' ' +
                std::to_string(q.version_minor) + (q.keep_alive ? " ka\n" : " close\n");
      for (const httpd::Header& h : q.headers) {
        digest.append(h.name).append(": ").append(h.value).append("\n");
      }
      digest.append(q.body).append("\n\n");
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
