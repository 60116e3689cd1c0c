// lpips_score: LPIPS distance of two images with an lpips-rt ONNX export, through OpenCV DNN.
//
//   lpips_score MODEL.onnx IMAGE0 IMAGE1
//
// Prints the distance on stdout (one line). Exit codes: 0 ok, 1 bad input (one line on stderr),
// 2 usage error.
#include <opencv2/core.hpp>
#include <opencv2/core/utils/logger.hpp>
#include <opencv2/dnn.hpp>
#include <opencv2/imgcodecs.hpp>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

// Every failure is reported as one line on stderr by main(); this carries the line.
struct Failure : std::runtime_error {
    using std::runtime_error::runtime_error;
};

std::vector<unsigned char> read_file(const std::string& path, const char* what) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) throw Failure(std::string("cannot open ") + what + " file " + path + ": " + std::strerror(errno));
    std::vector<unsigned char> data;
    unsigned char chunk[1 << 16];
    size_t n;
    while ((n = std::fread(chunk, 1, sizeof chunk, f)) > 0) data.insert(data.end(), chunk, chunk + n);
    const bool failed = std::ferror(f);
    const int err = errno;
    std::fclose(f);
    if (failed) throw Failure(std::string("cannot read ") + what + " file " + path + ": " + std::strerror(err));
    return data;
}

// --- ONNX metadata --------------------------------------------------------------------------------
// OpenCV's DNN module keeps no ONNX metadata, and pulling in libprotobuf + onnx.proto for two strings
// is not worth it. An .onnx file is one serialized ModelProto; its metadata_props are top-level
// field 14, each a StringStringEntryProto {1: key, 2: value}. So a walk over the top-level protobuf
// fields (varint tags, skipping everything but field 14) is all we need.

// Reads a base-128 varint at p; false if it runs past end or is longer than 64 bits.
bool read_varint(const unsigned char*& p, const unsigned char* end, uint64_t& value) {
    value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (p == end) return false;
        const unsigned char byte = *p++;
        value |= uint64_t(byte & 0x7F) << shift;
        if (!(byte & 0x80)) return true;
    }
    return false;
}

// Calls on_bytes(field number, data, size) for each length-delimited top-level field of the message
// in [p, end) and skips the others; false if the bytes are not a well-formed protobuf message.
template <class F>
bool for_each_field(const unsigned char* p, const unsigned char* end, F on_bytes) {
    while (p < end) {
        uint64_t tag, value;
        if (!read_varint(p, end, tag)) return false;
        switch (tag & 7) {  // wire type
            case 0: if (!read_varint(p, end, value)) return false; break;
            case 1: if (end - p < 8) return false; p += 8; break;
            case 5: if (end - p < 4) return false; p += 4; break;
            case 2:
                if (!read_varint(p, end, value) || value > uint64_t(end - p)) return false;
                on_bytes(tag >> 3, p, size_t(value));
                p += value;
                break;
            default: return false;  // groups (3, 4) are not used by ONNX; anything else is garbage
        }
    }
    return true;
}

std::map<std::string, std::string> read_metadata(const std::string& path, const std::vector<unsigned char>& model) {
    std::map<std::string, std::string> meta;
    bool entries_ok = true;
    const bool ok = for_each_field(model.data(), model.data() + model.size(),
        [&](uint64_t field, const unsigned char* data, size_t size) {
            if (field != 14) return;  // ModelProto.metadata_props
            std::string kv[3];
            entries_ok &= for_each_field(data, data + size, [&](uint64_t f, const unsigned char* d, size_t n) {
                if (f == 1 || f == 2) kv[f].assign(reinterpret_cast<const char*>(d), n);
            });
            meta[kv[1]] = kv[2];
        });
    if (!ok || !entries_ok)
        throw Failure("wrong model: " + path + " is not an ONNX file (malformed or truncated protobuf)");
    return meta;
}

std::string get(const std::map<std::string, std::string>& m, const std::string& key, const std::string& dflt = "") {
    auto it = m.find(key);
    return it == m.end() ? dflt : it->second;
}

struct ModelInfo {
    std::string net;  // alex, vgg or squeeze
    int min_side;     // smallest H and W the net accepts
};

// Checks the file is an lpips-rt "distance" export with float32 NCHW RGB inputs.
ModelInfo check_model(const std::string& path, const std::map<std::string, std::string>& meta) {
    if (get(meta, "format") != "lpips-rt/1")
        throw Failure("wrong model: " + path + " is not an LPIPS export of lpips-rt (no format=lpips-rt/1 "
                      "metadata); export one with lpips-export");
    const std::string kind = get(meta, "kind");
    if (kind == "spatial")
        throw Failure("wrong model: " + path + " is a spatial export (per-pixel map), which OpenCV 4.6 cannot "
                      "load; use a distance export (lpips-export without --spatial)");
    if (kind != "distance") throw Failure("wrong model: " + path + " has kind '" + kind + "', expected 'distance'");
    if (get(meta, "input_dtype", "float32") != "float32" || get(meta, "input_layout", "nchw") != "nchw" ||
        get(meta, "input_channels", "rgb") != "rgb")
        throw Failure("wrong model: " + path + " takes " + get(meta, "input") +
                      "; this program feeds float32 [N,3,H,W] RGB in [-1,1]");
    const std::string s = get(meta, "min_side");
    char* rest = nullptr;
    const long min_side = std::strtol(s.c_str(), &rest, 10);
    if (s.empty() || *rest != '\0' || min_side < 1 || min_side > 1 << 20)
        throw Failure("wrong model: " + path + " has no valid min_side metadata ('" + s + "')");
    return {get(meta, "net"), int(min_side)};
}

// --- Images -----------------------------------------------------------------------------------------

cv::Mat load_image(const std::string& path) {
    // imread says nothing about *why* it failed, so first check the file can be read at all
    // (fopen succeeds on a directory; reading it fails with EISDIR).
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) throw Failure("cannot open image " + path + ": " + std::strerror(errno));
    const bool empty = std::fgetc(f) == EOF, failed = std::ferror(f);
    const int err = errno;
    std::fclose(f);
    if (failed) throw Failure("cannot read image " + path + ": " + std::strerror(err));
    if (empty) throw Failure("cannot decode image " + path + ": empty file");
    // IMREAD_COLOR: BGR, grey replicated to 3 channels, alpha dropped, EXIF orientation applied: the
    // same decoding as the official lpips.load_image (cv2.imread(path)[:, :, ::-1]). IMREAD_ANYDEPTH
    // keeps 16-bit samples, which the Python runtime scales from their full range (not truncated).
    cv::Mat img = cv::imread(path, cv::IMREAD_COLOR | cv::IMREAD_ANYDEPTH);
    if (img.empty()) throw Failure("cannot decode image " + path + ": corrupt, truncated or not an image format OpenCV reads");
    if (img.type() != CV_8UC3 && img.type() != CV_16UC3)
        throw Failure("unsupported image " + path + ": only 8- and 16-bit images are scored");
    return img;
}

std::string size_str(const cv::Mat& m) { return std::to_string(m.cols) + "x" + std::to_string(m.rows); }

// The official im2tensor computes u / 127.5 - 1 in float64 and stores float32 (16-bit: u / 32767.5 - 1,
// the full range). Doing the maths in float would differ in the last bit for some values; a table
// built in double is exact and fast.
template <class Sample>
const std::vector<float>& unit_table() {
    static const std::vector<float> table = [] {
        const size_t n = size_t(1) << (8 * sizeof(Sample));
        const double half = (double(n) - 1.0) / 2.0;
        std::vector<float> t(n);
        for (size_t i = 0; i < n; ++i) t[i] = float(double(i) / half - 1.0);
        return t;
    }();
    return table;
}

// BGR HxWx3 of Sample (uint8 or uint16) -> float32 [1,3,H,W] RGB in [-1,1].
template <class Sample>
cv::Mat planes_from(const cv::Mat& bgr) {
    const std::vector<float>& unit = unit_table<Sample>();
    const int h = bgr.rows, w = bgr.cols;
    const int shape[] = {1, 3, h, w};
    cv::Mat blob(4, shape, CV_32F);
    float* r = blob.ptr<float>();
    float* g = r + size_t(h) * w;
    float* b = g + size_t(h) * w;
    for (int y = 0; y < h; ++y) {
        const Sample* px = bgr.ptr<Sample>(y);
        for (int x = 0; x < w; ++x, px += 3) {
            *b++ = unit[px[0]];
            *g++ = unit[px[1]];
            *r++ = unit[px[2]];
        }
    }
    return blob;
}

cv::Mat to_blob(const cv::Mat& bgr) {
    return bgr.depth() == CV_16U ? planes_from<unsigned short>(bgr) : planes_from<unsigned char>(bgr);
}

// cv::Exception::what() spans several lines ("OpenCV(4.6.0) file:line: error: (...) in function ...");
// keep the message on one line.
std::string one_line(std::string s) {
    for (char& c : s)
        if (c == '\n' || c == '\r') c = ' ';
    while (!s.empty() && s.back() == ' ') s.pop_back();
    return s;
}

int run(const std::string& model_path, const std::string& path0, const std::string& path1) {
    const std::vector<unsigned char> model = read_file(model_path, "model");
    const ModelInfo info = check_model(model_path, read_metadata(model_path, model));

    const cv::Mat img0 = load_image(path0), img1 = load_image(path1);
    if (img0.size() != img1.size())
        throw Failure("size mismatch: " + path0 + " is " + size_str(img0) + " but " + path1 + " is " +
                      size_str(img1) + " (width x height); LPIPS compares images of the same size");
    if (img0.rows < info.min_side || img0.cols < info.min_side)
        throw Failure("image too small: " + size_str(img0) + " (width x height); the LPIPS " + info.net +
                      " model needs both sides >= " + std::to_string(info.min_side));

    cv::dnn::Net net;
    try {
        net = cv::dnn::readNetFromONNX(reinterpret_cast<const char*>(model.data()), model.size());
    } catch (const cv::Exception& e) {
        throw Failure("OpenCV cannot load " + model_path + ": " + one_line(e.what()));
    }
    net.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
    net.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
    net.setInput(to_blob(img0), "img0");
    net.setInput(to_blob(img1), "img1");
    // By name: an export with --metrics has further outputs (psnr, ssim, ...), and forward() without a
    // name returns the last one.
    const cv::Mat out = net.forward("distance");  // [N] in ONNX; OpenCV hands it back as [N,1]
    if (out.type() != CV_32F || out.total() != 1)
        throw Failure("unexpected model output: " + std::to_string(out.total()) + " values, expected 1");
    std::printf("%.9g\n", double(out.ptr<float>()[0]));
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: %s MODEL.onnx IMAGE0 IMAGE1\n", argc > 0 ? argv[0] : "lpips_score");
        return 2;
    }
    // OpenCV logs its own (multi-line) diagnostics to stderr, e.g. from the ONNX importer before it
    // throws; we report errors ourselves in one line. OPENCV_LOG_LEVEL, if set, still wins.
    if (!std::getenv("OPENCV_LOG_LEVEL")) cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_SILENT);
    try {
        return run(argv[1], argv[2], argv[3]);
    } catch (const Failure& e) {
        std::fprintf(stderr, "lpips_score: error: %s\n", e.what());
    } catch (const cv::Exception& e) {
        std::fprintf(stderr, "lpips_score: error: OpenCV: %s\n", one_line(e.what()).c_str());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "lpips_score: error: %s\n", e.what());
    }
    return 1;
}
