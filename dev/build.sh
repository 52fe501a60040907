#!/bin/sh
# Builds a throwaway dev program (never part of the library): sh dev/build.sh dev/gemm_shapes.cpp -lopenblas
set -e
cd "$(dirname "$0")"
src=$(basename "$1"); shift
g++ -O3 -march=native -DEIGEN_DONT_PARALLELIZE -std=gnu++20 -fopenmp -I../include -I../src -I/usr/include/eigen3 "$src" -o /tmp/"${src%.cpp}" "$@"
echo "built /tmp/${src%.cpp}"
