# install/export so that find_package(gka) gives gka::core.
include(CMakePackageConfigHelpers)

install(TARGETS gka_core EXPORT gkaTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY include/gka DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT gkaTargets NAMESPACE gka:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/gka)

configure_package_config_file(cmake/gkaConfig.cmake.in ${PROJECT_BINARY_DIR}/gkaConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/gka)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/gkaConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/gkaConfig.cmake ${PROJECT_BINARY_DIR}/gkaConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/gka)
