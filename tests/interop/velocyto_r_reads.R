#!/usr/bin/env Rscript
# Read a loom file as velocyto.R's read.loom.matrices() does (engine "hdf5r", its default), and print what it got as
# JSON. velocyto.R itself is GitHub-only and needs a compiler toolchain for its C++ code, so this script runs the
# reading lines of read.loom.matrices (velocyto-team/velocyto.R R/momentum_routines.R) unchanged: names from
# col_attrs/CellID and row_attrs/Gene, the layers spliced, unspliced, ambiguous (and spanning when present) as
# genes x cells dgCMatrix. Needs hdf5r, Matrix and jsonlite (tests/interop/setup_r_clients.sh installs them).
#
# Usage: Rscript velocyto_r_reads.R FILE.loom        Exit status 0 iff the matrices were read.
suppressPackageStartupMessages({library(hdf5r); library(Matrix); library(jsonlite)})
file <- commandArgs(trailingOnly = TRUE)[1]
res <- tryCatch({
  f <- hdf5r::H5File$new(file, mode = 'r')
  cells <- f[["col_attrs/CellID"]][]
  genes <- f[["row_attrs/Gene"]][]
  dl <- c(spliced = "layers/spliced", unspliced = "layers/unspliced", ambiguous = "layers/ambiguous")
  if ("layers/spanning" %in% hdf5r::list.datasets(f)) {
    dl <- c(dl, c(spanning = "layers/spanning"))
  }
  dlist <- lapply(dl, function(path) {
    m <- as(t(f[[path]][, ]), 'dgCMatrix')
    rownames(m) <- genes; colnames(m) <- cells
    return(m)
  })
  f$close_all()
  list(ok = TRUE, cells = head(colnames(dlist$spliced), 3), genes = head(rownames(dlist$spliced), 3),
       n_cells = ncol(dlist$spliced), n_genes = nrow(dlist$spliced),
       sums = lapply(dlist, function(m) sum(m)))
}, error = function(e) list(ok = FALSE, error = conditionMessage(e)))
cat(toJSON(res, auto_unbox = TRUE, digits = NA), "\n")
quit(status = if (isTRUE(res$ok)) 0 else 1)
