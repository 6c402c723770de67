// libFuzzer target for the HTTP request parser. The first byte picks a chunk size (bits 0-3) and
// whether the stream starts with the head of a chunked request (bit 4), so that the fuzzer
// reaches the chunked-body grammar (sizes, extensions, trailers, their bounds) without having to
// find a head first; the rest is the byte stream. It is parsed twice, whole and in chunks
// (keeping the unconsumed tail as evloop does), and the two runs must agree: same requests (a
// chunked one's decoded body included), same error. A partial request must never hold more than
// Limits::max_request_bytes() (the server's input_limit rests on it), nor a body be larger than
// max_body_bytes. Crashes, sanitizer reports, disagreements and broken bounds all abort.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "http_parser.hpp"

namespace {

constexpr std::string_view kChunkedHead =
    "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";

// Small enough for the fuzzer's inputs to reach every limit (414, 431, 413, the chunk-size line,
// the framing budget).
httpd::Limits fuzz_limits() {
  httpd::Limits limits;
  limits.max_head_bytes = 512;
  limits.max_headers = 16;
  limits.max_body_bytes = 1024;
  limits.max_chunk_line_bytes = 64;
  return limits;
}

// A digest of everything parsed: each request's fields, then the error status.
std::string run(std::string_view stream, std::size_t chunk) {
  const httpd::Limits limits = fuzz_limits();
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
        if (r.error_status < 400 || r.error_status > 505 || r.error_reason.empty()) std::abort();
        return digest + "error " + std::to_string(r.error_status);
      }
      if (r.status == httpd::ParseStatus::incomplete) {
        if (r.consumed != 0 || in.size() > limits.max_request_bytes()) std::abort();
        break;
      }
      if (r.consumed == 0 || r.consumed > in.size() || r.consumed > limits.max_request_bytes()) {
        std::abort();
      }
      const httpd::Request& q = parser.request();
      if (q.body.size() > limits.max_body_bytes) std::abort();
      digest += std::string(httpd::method_name(q.method)) + ' ' + std::string(q.target) + ' ' +
                std::to_string(q.version_minor) + (q.keep_alive ? " ka\n" : " close\n");
      for (const httpd::Header& h : q.headers) {
        digest.append(h.name).append(": ").append(h.value).append("\n");
      }
      digest.append(std::to_string(q.body.size())).append(":").append(q.body).append("\n\n");
      used += r.consumed;
    }
    tail.erase(0, used);
  }
  return digest + "tail " + std::to_string(tail.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t chunk = (data[0] & 0x0f) + 1;
  std::string stream((data[0] & 0x10) != 0 ? kChunkedHead : std::string_view());
  stream.append(reinterpret_cast<const char*>(data + 1), size - 1);
  if (run(stream, stream.size() + 1) != run(stream, chunk)) std::abort();
  return 0;
}
