#!/usr/bin/env Rscript
# The phytools side of bench/compare --family=mk: one mode per call, one JSON line on stdout.
#
#   Rscript bench/mk_phytools.R fit TREE TIPS RATES
#       phytools::fitMk(tree, x, model = RATES) with its defaults (pi = "equal"): wall seconds,
#       log-likelihood, rates
#   Rscript bench/mk_phytools.R simmap TREE TIPS N RATE
#       phytools::make.simmap(tree, x, model = "ER", Q = the ER matrix of RATE, nsim = N):
#       wall seconds, ms per map, mean number of changes
#   Rscript bench/mk_phytools.R loglik TREE TIPS RATES_CSV
#       the log-likelihood phytools computes for an ARD rate vector (fitMk with fixedQ), to
#       confirm emfit's maximum with phytools' own likelihood
#
# Needs the Debian packages r-cran-phytools and r-cran-ape. One thread (the BLAS is not used).
suppressPackageStartupMessages({
  library(ape)
  library(phytools)
})

args <- commandArgs(trailingOnly = TRUE)
mode <- args[1]
tree <- read.tree(args[2])
tips <- read.csv(args[3], stringsAsFactors = FALSE)
x <- setNames(tips[[2]], tips[[1]])
states <- sort(unique(x))
k <- length(states)
num <- function(v) paste(sprintf("%.17g", v), collapse = ", ")

if (mode == "fit") {
  rates <- args[4]
  t <- system.time(fit <- fitMk(tree, x, model = rates))[["elapsed"]]
  cat(sprintf("{\"mode\": \"fit\", \"rates\": \"%s\", \"seconds\": %.6f, \"log_likelihood\": %.17g, \"rate_values\": [%s], \"phytools\": \"%s\"}\n",
              rates, t, as.numeric(logLik(fit)), num(fit$rates), as.character(packageVersion("phytools"))))
} else if (mode == "simmap") {
  n <- as.integer(args[4])
  rate <- as.numeric(args[5])
  Q <- matrix(rate, k, k, dimnames = list(states, states))
  diag(Q) <- -(k - 1) * rate
  set.seed(1)
  t <- system.time(maps <- make.simmap(tree, x, model = "ER", Q = Q, nsim = n,
                                       message = FALSE))[["elapsed"]]
  if (n == 1) maps <- list(maps)
  changes <- mean(sapply(maps, function(m) countSimmap(m, message = FALSE)$N))
  cat(sprintf("{\"mode\": \"simmap\", \"n\": %d, \"seconds\": %.6f, \"ms_per_map\": %.6f, \"mean_changes\": %.6f, \"tips\": %d}\n",
              n, t, 1000 * t / n, changes, Ntip(tree)))
} else if (mode == "loglik") {
  r <- as.numeric(strsplit(args[4], ",")[[1]])
  Q <- matrix(0, k, k, dimnames = list(states, states))
  Q[col(Q) != row(Q)] <- r
  diag(Q) <- -rowSums(Q)
  fit <- fitMk(tree, x, model = "ARD", fixedQ = Q)
  cat(sprintf("{\"mode\": \"loglik\", \"log_likelihood\": %.17g}\n", as.numeric(logLik(fit))))
} else {
  stop(paste("unknown mode", mode))
}
