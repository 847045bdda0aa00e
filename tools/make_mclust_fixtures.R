#!/usr/bin/env Rscript
# Writes tests/fixtures/mclust_faithful.json: R mclust's EM (me()) on the bundled Old Faithful
# data from a fixed soft partition, for the four covariance structures emfit shares with mclust
# (VVV = full, VVI = diag, EEE = tied, VII = spherical). mclust's iteration is an M-step then an
# E-step, so the parameters after 1 iteration are the M-step of the partition; they are emfit's
# starting point, and emfit's (T - 1) iterations are compared with mclust's T.
# Run with Debian's r-cran-mclust (apt-get install --no-install-recommends r-cran-mclust):
#     Rscript tools/make_mclust_fixtures.R
suppressMessages(library(mclust))
args <- commandArgs(trailingOnly = FALSE)
script <- sub("--file=", "", args[grep("--file=", args)])
root <- normalizePath(file.path(dirname(script), ".."))
x <- as.matrix(read.csv(file.path(root, "data/faithful.csv")))
d <- ncol(x)
z <- cbind(ifelse(x[, 1] > 3, 0.8, 0.2), ifelse(x[, 1] > 3, 0.2, 0.8))
k <- ncol(z)
num <- function(v) paste(sprintf("%.17g", v), collapse = ", ")
mat <- function(m) paste0("[", paste(apply(m, 1, function(r) paste0("[", num(r), "]")),
                                     collapse = ", "), "]")
covariances <- function(type, sigma) {
  switch(type,
         full = do.call(rbind, lapply(seq_len(k), function(j) sigma[, , j])),
         tied = sigma[, , 1],
         diag = t(sapply(seq_len(k), function(j) diag(sigma[, , j]))),
         spherical = matrix(sapply(seq_len(k), function(j) sigma[1, 1, j]), ncol = 1))
}
params <- function(fit, type) {
  p <- fit$parameters
  sprintf('{"weights": [%s], "means": %s, "covariances": %s, "log_likelihood": %.17g}',
          num(p$pro), mat(t(p$mean)), mat(covariances(type, p$variance$sigma)), fit$loglik)
}
models <- c(full = "VVV", diag = "VVI", tied = "EEE", spherical = "VII")
cases <- c()
for (type in names(models)) {
  start <- me(data = x, modelName = models[[type]], z = z,
              control = emControl(itmax = 1, tol = c(0, 0)))
  for (iterations in c(2, 10, 50)) {
    fit <- me(data = x, modelName = models[[type]], z = z,
              control = emControl(itmax = iterations, tol = c(0, 0)))
    cases <- c(cases, sprintf(
      '{"covariance_type": "%s", "mclust_model": "%s", "mclust_iterations": %d, "init": %s, "result": %s}',
      type, models[[type]], iterations, params(start, type), params(fit, type)))
  }
}
out <- file.path(root, "tests/fixtures/mclust_faithful.json")
writeLines(sprintf('{"generator": "R %s, mclust %s", "data": "data/faithful.csv", "k": %d, "cases": [\n%s\n]}',
                   getRversion(), packageVersion("mclust"), k,
                   paste(cases, collapse = ",\n")), out)
cat("wrote", out, "with", length(cases), "cases\n")
