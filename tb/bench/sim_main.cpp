// Plain C++ Verilator harness of the accelerator top (sqdm_top), the baseline of
// `python -m tb.bench_sim`: the same memories, descriptor and map as the cocotb replay
// (tb/replay.py), loaded through the host port from the trace's $readmemh files, then
// start -> done with nothing but clock edges, then the out memory read back and compared.
//
// Usage: sim_main JOBFILE. The job file (written by tb/bench_sim.py) holds, per execution:
//   exec <name> <expected cnt_cycles>
//   desc <hex>            descriptor register value
//   map <hex>             input channel map
//   load <sel> <file>     host-port load of memory <sel> (hw.top.MemSel) from a hex file
//   expect <file> <n>     expected out words (out_expected.hex), first n
//   run
// Output: one "result ..." line per execution and a "total ..." line (key=value pairs).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "Vsqdm_top.h"
#include "verilated.h"

namespace {

using Word = std::vector<uint32_t>;  // LSB first, 32 bits per element

Word parse_hex(const std::string& text) {
    Word w;
    int n = static_cast<int>(text.size());
    for (int end = n; end > 0; end -= 8) {
        int start = end - 8 < 0 ? 0 : end - 8;
        w.push_back(
            static_cast<uint32_t>(std::stoul(text.substr(start, end - start), nullptr, 16)));
    }
    return w;
}

std::vector<Word> read_hex_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) {
        std::cerr << "cannot open " << path << "\n";
        std::exit(2);
    }
    std::vector<Word> words;
    std::string tok;
    while (in >> tok) words.push_back(parse_hex(tok));
    return words;
}

template <typename Wide>
void set_wide(Wide& sig, const Word& w, int nwords) {
    for (int i = 0; i < nwords; ++i) sig[i] = i < static_cast<int>(w.size()) ? w[i] : 0;
}

template <typename Wide>
bool equal_wide(const Wide& sig, const Word& w, int nwords) {
    for (int i = 0; i < nwords; ++i)
        if (sig[i] != (i < static_cast<int>(w.size()) ? w[i] : 0u)) return false;
    return true;
}

constexpr int kWdataWords = (8447 / 32) + 1;  // host_wdata / host_rdata: 8448 bits
constexpr int kDescWords = (173 / 32) + 1;    // descriptor: 174 bits
constexpr int kOutWordWords = (263 / 32) + 1; // one act/out word: 264 bits
constexpr int kOutSel = 4;                    // hw.top.MemSel.OUT

struct Harness {
    std::unique_ptr<VerilatedContext> ctx{new VerilatedContext};
    std::unique_ptr<Vsqdm_top> top;
    uint64_t cycles = 0;

    Harness() : top(new Vsqdm_top{ctx.get()}) {}

    void tick() {
        top->clk = 0;
        top->eval();
        top->clk = 1;
        top->eval();
        ++cycles;
    }
    void reset() {
        top->rst = 1;
        tick();
        tick();
        top->rst = 0;
        tick();
    }
    void load(int sel, const std::vector<Word>& words) {
        top->host_sel = sel;
        top->host_we = 1;
        for (size_t a = 0; a < words.size(); ++a) {
            top->host_addr = static_cast<uint32_t>(a);
            set_wide(top->host_wdata, words[a], kWdataWords);
            tick();
        }
        top->host_we = 0;
    }
};

}  // namespace

int main(int argc, char** argv) {
    // Verilator's own +verilator+... arguments (e.g. +verilator+rand+reset+2 +verilator+seed+N
    // to start from random register and memory contents) are passed through.
    std::string job_path;
    for (int i = 1; i < argc; ++i)
        if (argv[i][0] != '+') job_path = argv[i];
    if (job_path.empty()) {
        std::cerr << "usage: " << argv[0] << " [+verilator+...] JOBFILE\n";
        return 2;
    }
    Verilated::commandArgs(argc, argv);
    Harness h;
    h.reset();
    std::ifstream job(job_path);
    std::string line, name;
    long long want_cycles = -1;
    Word desc, map;
    std::vector<Word> expect;
    size_t expect_n = 0;
    uint64_t load_cycles = 0;
    double total_compute_s = 0;
    uint64_t total_compute_cycles = 0;
    int failures = 0, runs = 0;
    auto t_all = std::chrono::steady_clock::now();
    while (std::getline(job, line)) {
        std::istringstream ls(line);
        std::string cmd;
        ls >> cmd;
        if (cmd == "exec") {
            ls >> name >> want_cycles;
            load_cycles = 0;
        } else if (cmd == "desc") {
            std::string hex;
            ls >> hex;
            desc = parse_hex(hex);
        } else if (cmd == "map") {
            std::string hex;
            ls >> hex;
            map = parse_hex(hex);
        } else if (cmd == "load") {
            int sel;
            std::string path;
            ls >> sel >> path;
            uint64_t c0 = h.cycles;
            h.load(sel, read_hex_file(path));
            load_cycles += h.cycles - c0;
        } else if (cmd == "expect") {
            std::string path;
            ls >> path >> expect_n;
            expect = read_hex_file(path);
        } else if (cmd == "run") {
            set_wide(h.top->desc, desc, kDescWords);
            h.top->map = map.empty() ? 0 : map[0];
            h.top->start = 1;
            h.tick();  // cycle 0: start sampled
            h.top->start = 0;
            auto t0 = std::chrono::steady_clock::now();
            uint64_t c0 = h.cycles;
            while (!h.top->done) {
                h.tick();
                if (h.cycles - c0 > 100000000ull) {
                    std::cerr << name << ": no done after 1e8 cycles\n";
                    return 3;
                }
            }
            double compute_s =
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            uint64_t edges = h.cycles - c0;
            uint64_t cnt = h.top->cnt_cycles;
            // read back: address set before an edge, data valid after it
            h.top->host_sel = kOutSel;
            bool out_ok = expect.size() >= expect_n;
            for (size_t a = 0; a < expect_n && out_ok; ++a) {
                h.top->host_addr = static_cast<uint32_t>(a);
                h.tick();
                out_ok = equal_wide(h.top->host_rdata, expect[a], kOutWordWords);
            }
            bool ok = out_ok && static_cast<long long>(cnt) == want_cycles && cnt == edges + 0;
            failures += ok ? 0 : 1;
            ++runs;
            total_compute_s += compute_s;
            total_compute_cycles += cnt;
            std::printf("result name=%s cycles=%llu edges=%llu model=%lld compute_s=%.6f "
                        "load_cycles=%llu out_ok=%d ok=%d\n",
                        name.c_str(), static_cast<unsigned long long>(cnt),
                        static_cast<unsigned long long>(edges), want_cycles, compute_s,
                        static_cast<unsigned long long>(load_cycles), out_ok ? 1 : 0,
                        ok ? 1 : 0);
        }
    }
    double all_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_all).count();
    std::printf("total runs=%d failures=%d compute_cycles=%llu compute_s=%.6f all_cycles=%llu "
                "all_s=%.6f\n",
                runs, failures, static_cast<unsigned long long>(total_compute_cycles),
                total_compute_s, static_cast<unsigned long long>(h.cycles), all_s);
    h.top->final();
    return failures ? 1 : 0;
}
