#include <torch/extension.h>
#include <ATen/Parallel.h>
// Scratch for bench/checks/fused_transforms.py, not part of sagedet: Winograd's input transform (pad, tile,
// B^T d B into V (α², tiles, C)) and output transform (A^T m A, bias, crop into an NHWC map) each as one
// pass in C++, 8 channels at a time, against the torch operations of sagedet.model.winograd.
#include "matrices.h"  // Matrices<A>::bt (A x A) and ::at (A-2 x A), written by fused_transforms.py

namespace {

constexpr int CB = 8;

// The jobs of a pass: every tile of the batch's maps, CB channels at a time (a tile's channel blocks
// one after another, so that consecutive jobs write adjacent channels).
struct Jobs {
  int64_t tiles_w, tiles_per_image, tiles, channels, channel_blocks;
  Jobs(int64_t n, int64_t c, int64_t h, int64_t w, int tile)
      : tiles_w((w + tile - 1) / tile), tiles_per_image(((h + tile - 1) / tile) * tiles_w),
        tiles(n * tiles_per_image), channels(c), channel_blocks((c + CB - 1) / CB) {}
  int64_t count() const { return tiles * channel_blocks; }
};

// One job: tile t (image img, tile row ty, column tx) and channels c0 .. c0 + cn - 1.
struct Job {
  int64_t t, c0, cn, img, ty, tx;
  Job(const Jobs& jobs, int64_t job)
      : t(job / jobs.channel_blocks), c0((job % jobs.channel_blocks) * CB),
        cn(std::min<int64_t>(CB, jobs.channels - c0)), img(t / jobs.tiles_per_image),
        ty(t % jobs.tiles_per_image / jobs.tiles_w), tx(t % jobs.tiles_per_image % jobs.tiles_w) {}
};

template <int A>
void input_tf(const float* x, int64_t n, int64_t c, int64_t h, int64_t w,
              int64_t sn, int64_t sc, int64_t sh, int64_t sw, float* v) {
  constexpr int tile = A - 2;
  constexpr const auto& bt = Matrices<A>::bt;
  const Jobs jobs(n, c, h, w, tile);
  const int64_t T = jobs.tiles;
  at::parallel_for(0, jobs.count(), 1, [&](int64_t begin, int64_t end) {
    alignas(64) float d[A][A][CB];
    alignas(64) float t1[A][A][CB];
    for (int64_t job = begin; job < end; ++job) {
      const Job one(jobs, job);
      const int64_t t = one.t, c0 = one.c0, cn = one.cn, img = one.img, ty = one.ty, tx = one.tx;
      const int64_t y0 = ty * tile - 1, x0 = tx * tile - 1;
      const bool inside = y0 >= 0 && x0 >= 0 && y0 + A <= h && x0 + A <= w && cn == CB && sc == 1;
      if (inside) {
        const float* base = x + img * sn + y0 * sh + x0 * sw + c0;
        for (int i = 0; i < A; ++i)
          for (int j = 0; j < A; ++j) {
            const float* p = base + i * sh + j * sw;
#pragma GCC unroll 8
            for (int k = 0; k < CB; ++k) d[i][j][k] = p[k];
          }
      } else {
        for (int i = 0; i < A; ++i) {
          const int64_t yy = y0 + i;
          for (int j = 0; j < A; ++j) {
            const int64_t xx = x0 + j;
            if (yy < 0 || yy >= h || xx < 0 || xx >= w) {
              for (int k = 0; k < CB; ++k) d[i][j][k] = 0.f;
            } else {
              const float* p = x + img * sn + yy * sh + xx * sw + c0 * sc;
              for (int k = 0; k < CB; ++k) d[i][j][k] = k < cn ? p[k * sc] : 0.f;
            }
          }
        }
      }
#pragma GCC unroll 8
      for (int i = 0; i < A; ++i)
#pragma GCC unroll 8
        for (int b = 0; b < A; ++b) {
          float acc[CB] = {0};
#pragma GCC unroll 8
          for (int j = 0; j < A; ++j)
            if (bt[b][j] != 0.f) for (int k = 0; k < CB; ++k) acc[k] += bt[b][j] * d[i][j][k];
          for (int k = 0; k < CB; ++k) t1[i][b][k] = acc[k];
        }
#pragma GCC unroll 8
      for (int a = 0; a < A; ++a)
#pragma GCC unroll 8
        for (int b = 0; b < A; ++b) {
          float acc[CB] = {0};
#pragma GCC unroll 8
          for (int i = 0; i < A; ++i)
            if (bt[a][i] != 0.f) for (int k = 0; k < CB; ++k) acc[k] += bt[a][i] * t1[i][b][k];
          float* out = v + ((a * A + b) * T + t) * c + c0;
          if (cn == CB) { for (int k = 0; k < CB; ++k) out[k] = acc[k]; }
          else { for (int k = 0; k < cn; ++k) out[k] = acc[k]; }
        }
    }
  });
}

template <int A>
void output_tf(const float* m, int64_t n, int64_t c, int64_t h, int64_t w, const float* bias, float* y, bool relu) {
  constexpr int tile = A - 2;
  constexpr const auto& at = Matrices<A>::at;
  const Jobs jobs(n, c, h, w, tile);
  const int64_t T = jobs.tiles;
  at::parallel_for(0, jobs.count(), 1, [&](int64_t begin, int64_t end) {
    alignas(64) float mv[A][A][CB];
    alignas(64) float s[tile][A][CB];
    for (int64_t job = begin; job < end; ++job) {
      const Job one(jobs, job);
      const int64_t t = one.t, c0 = one.c0, cn = one.cn, img = one.img, ty = one.ty, tx = one.tx;
      for (int i = 0; i < A; ++i)
        for (int j = 0; j < A; ++j) {
          const float* p = m + ((i * A + j) * T + t) * c + c0;
          if (cn == CB) {
#pragma GCC unroll 8
            for (int k = 0; k < CB; ++k) mv[i][j][k] = p[k];
          } else { for (int k = 0; k < CB; ++k) mv[i][j][k] = k < cn ? p[k] : 0.f; }
        }
#pragma GCC unroll 8
      for (int a = 0; a < tile; ++a)
#pragma GCC unroll 8
        for (int j = 0; j < A; ++j) {
          float acc[CB] = {0};
#pragma GCC unroll 8
          for (int i = 0; i < A; ++i)
            if (at[a][i] != 0.f) for (int k = 0; k < CB; ++k) acc[k] += at[a][i] * mv[i][j][k];
          for (int k = 0; k < CB; ++k) s[a][j][k] = acc[k];
        }
      float bv[CB];
      for (int k = 0; k < CB; ++k) bv[k] = (bias && k < cn) ? bias[c0 + k] : 0.f;
      for (int a = 0; a < tile; ++a) {
        const int64_t yy = ty * tile + a;
        if (yy >= h) break;
#pragma GCC unroll 8
        for (int b = 0; b < tile; ++b) {
          const int64_t xx = tx * tile + b;
          if (xx >= w) break;
          float acc[CB];
          for (int k = 0; k < CB; ++k) acc[k] = bv[k];
#pragma GCC unroll 8
          for (int j = 0; j < A; ++j)
            if (at[b][j] != 0.f) for (int k = 0; k < CB; ++k) acc[k] += at[b][j] * s[a][j][k];
          if (relu) for (int k = 0; k < CB; ++k) acc[k] = acc[k] > 0.f ? acc[k] : 0.f;
          float* out = y + ((img * h + yy) * w + xx) * c + c0;
          if (cn == CB) { for (int k = 0; k < CB; ++k) out[k] = acc[k]; }
          else { for (int k = 0; k < cn; ++k) out[k] = acc[k]; }
        }
      }
    }
  });
}

}  // namespace

at::Tensor winograd_input(const at::Tensor& x, int64_t tile) {
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  const int64_t T = n * ((h + tile - 1) / tile) * ((w + tile - 1) / tile);
  auto v = at::empty({(tile + 2) * (tile + 2), T, c}, x.options());
  if (tile == 6) input_tf<8>(x.data_ptr<float>(), n, c, h, w, x.stride(0), x.stride(1), x.stride(2), x.stride(3), v.data_ptr<float>());
  else input_tf<6>(x.data_ptr<float>(), n, c, h, w, x.stride(0), x.stride(1), x.stride(2), x.stride(3), v.data_ptr<float>());
  return v;
}

at::Tensor winograd_output(const at::Tensor& m, const c10::optional<at::Tensor>& bias,
                           int64_t n, int64_t h, int64_t w, bool relu) {
  const int64_t A = static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(m.size(0)))));
  const int64_t c = m.size(2);
  auto y = at::empty({n, h, w, c}, m.options());
  auto mc = m.contiguous();
  const float* bp = bias.has_value() ? bias->data_ptr<float>() : nullptr;
  if (A == 8) output_tf<8>(mc.data_ptr<float>(), n, c, h, w, bp, y.data_ptr<float>(), relu);
  else output_tf<6>(mc.data_ptr<float>(), n, c, h, w, bp, y.data_ptr<float>(), relu);
  return y.permute({0, 3, 1, 2});
}

TORCH_LIBRARY(sagedet_fused_bench, m) {
  m.def("winograd_input(Tensor x, int tile) -> Tensor", &winograd_input);
  m.def("winograd_output(Tensor m, Tensor? bias, int n, int h, int w, bool relu) -> Tensor", &winograd_output);
}
