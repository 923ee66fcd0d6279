#include "threadpool.h"

#include <algorithm>
#include <cstdlib>

namespace qk {

static inline void cpu_relax() {
#if defined(__x86_64__)
  __builtin_ia32_pause();
#endif
}

ThreadPool& ThreadPool::get() {
  static ThreadPool pool;
  return pool;
}

ThreadPool::ThreadPool() {
  int n = (int)std::thread::hardware_concurrency();
  if (const char* e = std::getenv("QATKIT_NUM_THREADS")) n = std::atoi(e);
  start(std::max(1, n));
}

ThreadPool::~ThreadPool() { stop(); }

void ThreadPool::start(int n) {
  nthreads_ = n;
  quit_ = false;
  // Workers start from the generation current now, not when they first run: a job posted
  // before a thread is scheduled must still count as new for it.
  const uint64_t g = gen_.load();
  for (int i = 1; i < n; i++) workers_.emplace_back(&ThreadPool::worker, this, g);
}

void ThreadPool::stop() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    quit_ = true;
    gen_++;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
}

void ThreadPool::resize(int n) {
  n = std::max(1, n);
  if (n == nthreads_) return;
  stop();
  start(n);
}

void ThreadPool::work(Job& job) {
  for (;;) {
    const int64_t i = job.next.fetch_add(1, std::memory_order_relaxed);
    if (i >= job.n) return;
    (*job.fn)(i);
    job.done.fetch_add(1, std::memory_order_release);
  }
}

void ThreadPool::worker(uint64_t seen) {
  for (;;) {
    for (int spins = 0; gen_.load(std::memory_order_acquire) == seen && spins < 20000; spins++) cpu_relax();
    std::shared_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return gen_.load() != seen; });
      seen = gen_.load();
      if (quit_) return;
      job = job_;  // keeps the job alive even if this worker is late and the caller has moved on
    }
    if (job) work(*job);
  }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t)>& fn) {
  if (n <= 0) return;
  if (nthreads_ == 1 || n == 1 || busy_.exchange(true)) {
    for (int64_t i = 0; i < n; i++) fn(i);  // trivial, or nested inside a task: run inline
    return;
  }
  auto job = std::make_shared<Job>();
  job->n = n;
  job->fn = &fn;
  {
    std::lock_guard<std::mutex> lk(mu_);
    job_ = job;
    gen_.fetch_add(1, std::memory_order_release);
  }
  cv_.notify_all();
  work(*job);
  for (int spins = 0; job->done.load(std::memory_order_acquire) != n; spins++) {
    if (spins < 4000) cpu_relax();
    else std::this_thread::yield();
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (job_ == job) job_.reset();
  }
  busy_ = false;
}

void ThreadPool::run_per_thread(const std::function<void(int)>& fn) {
  parallel_for(nthreads_, [&](int64_t t) { fn((int)t); });
}

void parallel_range(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  ThreadPool& p = ThreadPool::get();
  // A few chunks per thread: a worker preempted on a busy machine then holds up only a small piece.
  const int64_t chunks = std::min<int64_t>((n + std::max<int64_t>(1, grain) - 1) / std::max<int64_t>(1, grain),
                                           p.size() == 1 ? 1 : 4 * p.size());
  if (chunks <= 1) {
    fn(0, n);
    return;
  }
  p.parallel_for(chunks, [&](int64_t c) {
    const int64_t b = n * c / chunks, e = n * (c + 1) / chunks;
    if (b < e) fn(b, e);
  });
}

}  // namespace qk
