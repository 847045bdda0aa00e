#!/usr/bin/env Rscript
# Writes tests/fixtures/phytools_anoles.json: what phytools::fitMk reports for the ER, SYM and
# ARD Mk models on the bundled anoles (data/anole_tree.nwk, data/anole_ecomorph.csv), with its
# default equal root prior, and ape::ace's ER log-likelihood (its root adds ln k).
#
# Needs the Debian packages r-cran-phytools and r-cran-ape (apt-get install -y r-cran-phytools);
# the tests read the committed JSON and never need R. Run from the repository root:
#   Rscript tools/make_phytools_fixtures.R
suppressPackageStartupMessages({
  library(ape)
  library(phytools)
})

tree <- read.tree("data/anole_tree.nwk")
tips <- read.csv("data/anole_ecomorph.csv", stringsAsFactors = FALSE)
x <- setNames(tips[[2]], tips[[1]])
states <- sort(unique(x))

num <- function(v) paste(sprintf("%.17g", v), collapse = ", ")
str <- function(v) paste(sprintf("\"%s\"", v), collapse = ", ")

fit_json <- function(model) {
  fit <- fitMk(tree, x, model = model)
  index <- fit$index.matrix
  index[is.na(index)] <- 0
  q <- as.Qmatrix(fit)
  q <- q[states, states]
  paste0(
    "    \"", model, "\": {\n",
    "      \"log_likelihood\": ", sprintf("%.17g", as.numeric(logLik(fit))), ",\n",
    "      \"aic\": ", sprintf("%.17g", AIC(fit)), ",\n",
    "      \"num_rates\": ", length(fit$rates), ",\n",
    "      \"rates\": [", num(fit$rates), "],\n",
    # row-major k x k
    "      \"index\": [", num(as.vector(t(index))), "],\n",
    "      \"q\": [", num(as.vector(t(unclass(q)))), "]\n",
    "    }")
}

fits <- sapply(c("ER", "SYM", "ARD"), fit_json)
ace_er <- ace(x, tree, type = "discrete", model = "ER")

out <- paste0(
  "{\n",
  "  \"generator\": \"tools/make_phytools_fixtures.R with phytools ", as.character(packageVersion("phytools")),
  " and ape ", as.character(packageVersion("ape")), "\",\n",
  "  \"tree\": \"data/anole_tree.nwk\",\n",
  "  \"tips\": \"data/anole_ecomorph.csv\",\n",
  "  \"states\": [", str(states), "],\n",
  "  \"root\": \"equal\",\n",
  "  \"fitMk\": {\n", paste(fits, collapse = ",\n"), "\n  },\n",
  "  \"ace_er_log_likelihood\": ", sprintf("%.17g", as.numeric(logLik(ace_er))), "\n",
  "}\n")
writeLines(out, "tests/fixtures/phytools_anoles.json", sep = "")
cat(out)
