"""Speed benchmarks. They import distill; distill never imports them."""
